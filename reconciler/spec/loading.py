"""Read a SkyServe service file into a validated ServiceSpec, or say everything wrong with it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.errors import ProfileError, SpecError, UnparsableFileError, UnreadableFileError
from reconciler.paths import NAME_RE
from reconciler.spec import schema
from reconciler.spec.envs import Envs, parse_envs
from reconciler.spec.errors import Problems
from reconciler.spec.fields import Section, check_name, join
from reconciler.spec.fields import open_section as _open
from reconciler.spec.model import ServiceSpec, TLSFiles
from reconciler.spec.reading import load_yaml, read_text
from reconciler.spec.resources import parse_resources
from reconciler.spec.service import (
    check_probe_for_clouds,
    expand_vars,
    parse_service,
)
from reconciler.spec.sidecar import (
    REVIEW,
    SIDECAR_SUFFIX,
    MixSettings,
    parse_changes,
    parse_sidecar,
)
from reconciler.spec.tls import check_tls

SERVICE_NAME = NAME_RE
SERVICE_NAME_RULE = (
    "the service name comes from the file name and becomes resource names: use lowercase "
    "letters, digits and '-' (at most 63, not starting with '-')"
)


def load_spec(path: str | os.PathLike[str]) -> ServiceSpec:
    """The spec in `path`; the service is named after the file (`services/llama.yaml` -> llama).
    SpecError (one line per problem) for anything unusable, including a file that is not a
    regular file, is larger than MAX_FILE_BYTES or expands past MAX_VALUES values
    (spec/reading.py)."""
    return load_spec_texts(path, read_service_texts(path))


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """`services/<name>.hedgeform.yaml` beside `services/<name>.yaml` (spec/sidecar.py)."""
    return Path(path).with_name(f"{Path(path).stem}{SIDECAR_SUFFIX}")


def read_service_texts(path: str | os.PathLike[str]) -> dict[str, str]:
    """The texts a service's spec is read from, as `load_spec_texts` takes them: `service`
    (the file at `path`) and `sidecar` (its `.hedgeform.yaml`, "" when there is none).
    SpecError (one line) for a file that cannot be read, as `load_spec`."""
    sidecar = sidecar_path(path)
    return {
        "service": _read_spec_text(Path(path), "service file"),
        "sidecar": _read_spec_text(sidecar, "sidecar") if sidecar.exists() else "",
    }


def load_spec_texts(path: str | os.PathLike[str], texts: Mapping[str, str]) -> ServiceSpec:
    """The spec `texts` (`read_service_texts`'s shape) hold, named and reported as the file
    at `path`: what `hedgeform run` rolls out once a reviewed plan recorded those texts,
    whatever the file says now (docs/review.md). SpecError as `load_spec`."""
    source = str(path)
    try:
        data = load_yaml(texts.get("service", ""), source)
    except UnparsableFileError as error:
        raise SpecError([str(error)]) from None
    spec = parse_spec(data, name=Path(path).stem, source=source)
    if texts.get("sidecar"):
        mix, changes = _load_sidecar(sidecar_path(path), texts["sidecar"], spec)
        spec = replace(spec, mix=mix, changes=changes)
        inline = sorted(spec.secret_names - spec.envs_from_environment)
        if changes == REVIEW and inline:
            raise SpecError(
                [
                    f"{sidecar_path(path)}: changes: review keeps the reviewed service file in "
                    f"the service's record, so its secrets must not be written in it: give "
                    f"{', '.join(inline)} as `null` in secrets (set in the environment of "
                    "hedgeform), not inline"
                ]
            )
    return spec


def _load_sidecar(path: Path, text: str, spec: ServiceSpec) -> tuple[MixSettings | None, str]:
    """The settings of `services/<name>.hedgeform.yaml` (spec/sidecar.py) from its `text`;
    SpecError naming the file and field. A mix needs an "any of" set of several
    accelerators to weigh. The mix settings are None when it has no `mix:`."""
    source = str(path)
    data = _sidecar_data(text, source)
    resources = spec.resources
    names = resources.accelerator_names
    sets = resources.accelerators_any_of or any(loc.accelerators_any_of for loc in resources.any_of)
    try:
        settings = parse_sidecar(data, names)
        changes = parse_changes(data)
    except ProfileError as exc:
        raise SpecError([f"{source}: {exc}"]) from None
    if settings != MixSettings() and not (sets and len(names) > 1):
        raise SpecError(
            [
                f"{source}: mix: the service asks for one accelerator type; a mix weighs an "
                '"any of" set of several (resources.accelerators: {L4: 1, A10G: 1})'
            ]
        )
    _check_caps_serve_min(source, replace(spec, mix=settings), names)
    # A sidecar that says nothing of a mix (only `changes:`) leaves the spec without one.
    mixes = isinstance(data, Mapping) and data.get("mix") is not None
    return (settings if mixes else None), changes


def read_sidecar(path: str | os.PathLike[str]) -> Any:
    """The YAML data of the sidecar file at `path` (spec/sidecar.py), read and parsed as
    `load_spec` reads it (spec/reading.py's bounds, no key given twice), not yet
    checked against a service. SpecError (one line naming the file) for a file that cannot
    be read or is not such YAML."""
    return _sidecar_data(_read_spec_text(Path(path), "sidecar"), str(path))


def _sidecar_data(text: str, source: str) -> Any:
    try:
        return load_yaml(text, source)
    except UnparsableFileError as error:
        raise SpecError([str(error)]) from None


def _check_caps_serve_min(source: str, spec: ServiceSpec, names: Sequence[str]) -> None:
    """SpecError when every type is capped and the caps serve less than `min_replicas`
    replicas of the smallest type do (the least rate the mixing policy runs, policy/mixed.py):
    no mix could ever start."""
    settings = spec.mix
    if settings is None or not names or any(settings.cap(n) is None for n in names):
        return
    serves = {n: (spec.replica_rps(n) or 1.0) * settings.max_utilization for n in names}
    most = sum((settings.cap(n) or 0) * serves[n] for n in names)
    least = spec.service.replica_policy.min_replicas * min(serves.values())
    if most < least - 1e-9:
        raise SpecError(
            [
                f"{source}: mix.caps: the caps serve at most {most:g} requests/s, less than the "
                f"{least:g} of min_replicas ({spec.service.replica_policy.min_replicas}) "
                "replicas of the smallest type: raise a cap or lower min_replicas"
            ]
        )


def _read_spec_text(path: Path, what: str) -> str:
    """The file's text (spec/reading.py `read_text`); SpecError for what it refuses."""
    try:
        return read_text(path, what)
    except UnreadableFileError as error:
        raise SpecError([str(error)]) from None


def parse_spec(data: object, *, name: str, source: str) -> ServiceSpec:
    """Validate already-parsed YAML; raise one SpecError listing every problem found."""
    problems = Problems()
    check_name(problems, "(service name)", name, SERVICE_NAME, SERVICE_NAME_RULE)
    if data is None:
        problems.add(
            "(document)",
            "empty service file; expected a mapping with a 'service' "
            "section (and usually 'resources', 'setup', 'run')",
        )
        raise SpecError(problems.lines, source=source)
    top = _open(data, "", problems, schema.TOP_LEVEL)
    if top is None:
        raise SpecError(problems.lines, source=source)
    if "service" not in top.data:
        problems.add(
            "service",
            "required: a service file needs a 'service' section "
            "(at least readiness_probe and replicas or replica_policy)",
        )
    service = parse_service(top.get("service"), problems)
    resources = parse_resources(top.get("resources"), problems)
    envs = Envs()
    parse_envs(top.get("envs"), "envs", problems, envs)
    secrets = parse_envs(top.get("secrets"), "secrets", problems, envs)
    setup, run = top.string("setup"), top.string("run")
    _check_num_nodes(top)
    notes = _ignored_notes(top.data, resources_data=top.get("resources"))
    policy = service.replica_policy
    if not resources.use_spot:
        needs_spot = {
            "dynamic_ondemand_fallback": policy.dynamic_ondemand_fallback,
            "base_ondemand_fallback_replicas": policy.base_ondemand_fallback_replicas > 0,
            "spot_placer": policy.spot_placer is not None,
        }
        for field_name, used in needs_spot.items():
            if used:
                problems.add(
                    f"service.replica_policy.{field_name}",
                    "requires resources.use_spot: true (it only applies to spot replicas)",
                )
    named = {a.upper() for a in resources.accelerator_names}
    # An accelerator entry already refused (a bad count or name) is not among `named`: its
    # own line says what is wrong, so the map's key naming it is not a second problem.
    refused = any(".accelerators" in line.split(": ", 1)[0] for line in problems.lines)
    for key in () if refused else policy.target_qps_per_accelerator:
        if key.partition(":")[0].upper() not in named:
            they = f"they are {', '.join(sorted(named))}" if named else "it names none"
            problems.add(
                f"service.replica_policy.target_qps_per_replica.{key}",
                f"names no accelerator of resources.accelerators ({they})",
            )
    # A cloud load balancer's health check gates traffic there: the probe must fit it.
    plain_envs = {
        k: v for k, v in envs.values.items() if k not in secrets and k not in envs.from_environment
    }
    clouds = [location.cloud for location in resources.locations]
    if clouds and all(cloud == "local" for cloud in clouds):
        notes += _sandbox_notes(
            top.data,
            top.get("resources"),
            service.load_balancing_policy,
            several_types=len({a.upper() for a in resources.accelerator_names}) > 1,
        )
    if "azure" in clouds and service.load_balancing_policy is not None:
        notes += (
            f"service.load_balancing_policy: {service.load_balancing_policy} is not what "
            "Azure's layer-4 load balancer does: it spreads connections by a hash of their "
            "addresses, whatever the policy (honoured on aws and gcp)",
        )
    check_probe_for_clouds(service.readiness_probe, clouds, plain_envs, problems)
    if service.tls is not None:
        service = replace(service, tls=_tls_for_clouds(service.tls, clouds, problems))
    for header, value in service.readiness_probe.headers.items():
        if not expand_vars(value, plain_envs).isascii():
            problems.add(
                f"service.readiness_probe.headers.{header}",
                "header values must be ASCII once the envs they name are substituted",
            )
    if len(resources.ports) > 1 and service.ports is None:
        problems.add(
            "service.ports",
            "required when resources.ports lists several ports "
            f"({', '.join(map(str, resources.ports))}): which one serves traffic?",
        )
    if problems:
        raise SpecError(problems.lines, source=source)
    return ServiceSpec(
        name=name,
        service=service,
        resources=resources,
        envs=envs.values,
        setup=setup,
        run=run,
        envs_from_environment=frozenset(envs.from_environment),
        secret_names=frozenset(secrets),
        notes=notes,
    )


# Why each cloud does not take `service.tls`'s files, and what to use there instead.
_TLS_ON_CLOUDS = {
    "aws": (
        "import the certificate into ACM and name it per region in "
        "services/<SERVICE>.settings.yaml (aws_certificate_arns; docs/clouds.md)"
    ),
    "gcp": "the gcp module takes no certificate from Hedgeform yet; terminate TLS in front of it",
    "azure": (
        "Azure's layer-4 load balancer cannot terminate TLS; terminate it in front of it "
        "or on the replicas"
    ),
}


def _tls_for_clouds(
    tls: TLSFiles, clouds: Sequence[str | None], problems: Problems
) -> TLSFiles | None:
    """`service.tls` is served by the local sandbox's HAProxy; on a cloud the private key
    would have to reach its load balancer through Terraform's state, so it is refused there,
    one line per cloud, saying what to use instead. On the sandbox the files are checked."""
    others = sorted({cloud for cloud in clouds if cloud is not None and cloud != "local"})
    for cloud in others:
        problems.add(
            "service.tls",
            f"served by the local sandbox only: on {cloud} the private key would land in "
            f"Terraform's state; {_TLS_ON_CLOUDS.get(cloud, '')}",
        )
    unnamed = None in clouds and not others
    if unnamed:
        problems.add(
            "service.tls",
            "served by the local sandbox only: a location without a cloud is placed on "
            "aws, gcp or azure, where the private key would land in Terraform's state; "
            "name cloud: local",
        )
    if others or unnamed:
        return None
    return check_tls(tls, problems)


def _check_num_nodes(top: Section) -> None:
    """SkyPilot's `num_nodes`: 1 is what every replica is (one machine); more is refused."""
    nodes = top.integer("num_nodes", minimum=1)
    if nodes is not None and nodes > 1:
        top.bad(
            "num_nodes",
            f"{nodes if nodes < 10**6 else 'several'} nodes per replica is not supported: "
            "each replica is one machine; use "
            "num_nodes: 1 and more GPUs per replica (e.g. resources.accelerators: H100:8)",
        )


def _ignored_notes(data: Mapping[str, object], resources_data: object) -> tuple[str, ...]:
    """One line per SkyServe field given that Hedgeform accepts and ignores (schema.IGNORED)."""
    given = {("", key) for key in data}
    if isinstance(resources_data, Mapping):
        given |= {("resources", key) for key in resources_data}
    return tuple(
        f"{join(path, key)}: accepted and ignored: {why}"
        for (path, key), why in schema.IGNORED.items()
        if (path, key) in given
    )


# Fields the local sandbox does not act on, though aws/gcp/azure honour them (docs/spec.md):
# a sandbox replica is the sandbox's own test server on this machine.
_NOT_ON_SANDBOX: dict[tuple[str, str], str] = {
    ("", "setup"): "not run on the local sandbox: each replica is its own test server",
    ("", "run"): "not run on the local sandbox: each replica is its own test server",
    **{
        ("resources", key): "nominal on the local sandbox: it has no machines to size or boot"
        for key in ("cpus", "memory", "disk_size", "disk_tier", "network_tier", "image_id")
    },
}


def _sandbox_notes(
    data: Mapping[str, object],
    resources_data: object,
    balancing: str | None,
    *,
    several_types: bool,
) -> tuple[str, ...]:
    """One line per field given that a sandbox-only service carries without effect there
    (`_NOT_ON_SANDBOX`), and `load_balancing_policy` unless HAProxy does what it says:
    `balance roundrobin`, each member weighted by its GPU type's throughput
    (sandbox/haproxy.py `weight_for`), which is round robin while every replica is of one
    type, and SkyServe's `instance_aware_least_load` weighing."""
    given = {("", key) for key in data}
    if isinstance(resources_data, Mapping):
        given |= {("resources", key) for key in resources_data}
    notes = [
        f"{join(path, key)}: {why} (honoured on aws, gcp and azure)"
        for (path, key), why in _NOT_ON_SANDBOX.items()
        if (path, key) in given
    ]
    if balancing == "least_load" or (balancing == "round_robin" and several_types):
        notes.append(
            f"service.load_balancing_policy: {balancing} is not what the local sandbox does: "
            "its HAProxy balances round robin, each replica weighted by its GPU type's "
            "throughput (honoured on aws and gcp)"
        )
    return tuple(notes)
