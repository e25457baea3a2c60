"""Every SkyServe field, one row each in docs/spec.md, and its test here (issue 17, item 5).

SkyServe's fields are those of SkyPilot's `sky/utils/schemas.py` (`get_task_schema`,
`get_service_schema`, `get_resources_schema`) and `sky/serve/service_spec.py`. Each row says
what Hedgeform does with the field, as one or more cases a document can show:

- Honoured: the document loads and the spec (or the catalog, for what is decided at plan
  time) holds the value;
- Ignored: the document loads, and the spec keeps a note naming the field;
- Refused: the document fails with exactly one line, naming the field's path first and
  holding the words that say why and what to use instead.

`test_docs_spec_has_a_row_per_field_and_test` holds docs/spec.md to this table, and
`test_every_field_the_loader_knows_has_a_row` holds this table to the loader's schema.
"""

from __future__ import annotations

import atexit
import copy
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.backends.clouds import expand_locations
from reconciler.clouds.catalog import instance_for_region
from reconciler.clouds.stack_context import module_balancing
from reconciler.errors import CloudConfigError, SpecError
from reconciler.spec import Accelerator, Location, ServiceSpec, parse_spec, schema
from reconciler.spec.model import TLSFiles
from tests.spec.conftest import BASE
from tests.tlsfiles import make_pair

DOCS_SPEC = Path(__file__).resolve().parents[2] / "docs" / "spec.md"

Doc = dict[str, Any]


def _local(doc: Doc) -> None:
    """On the sandbox, whose load balancer carries every probe form."""
    doc["resources"].update(cloud="local", region="local-1")


def _no_location(doc: Doc) -> None:
    del doc["resources"]["cloud"], doc["resources"]["region"]


def _no_policy(doc: Doc) -> None:
    del doc["service"]["replica_policy"]


def _instance_aware(doc: Doc) -> None:
    """SkyServe's per-accelerator targets, with the load balancing they require."""
    doc["resources"]["accelerators"] = {"L4": 1, "A10G": 1}
    doc["service"]["load_balancing_policy"] = "instance_aware_least_load"


def _on(cloud: str, region: str) -> Callable[[Doc], None]:
    def prep(doc: Doc) -> None:
        doc["resources"].update(cloud=cloud, region=region)

    return prep


def _gpus(accelerators: object) -> Callable[[Doc], None]:
    def prep(doc: Doc) -> None:
        doc["resources"]["accelerators"] = accelerators

    return prep


def _instance(cloud: str, region: str) -> Callable[[ServiceSpec], object]:
    """What the catalog runs in `cloud`/`region` at plan time: (type, accelerators)."""

    def check(spec: ServiceSpec) -> object:
        choice = instance_for_region(spec.resources, cloud, region)
        return choice.instance_type, choice.accelerator, choice.count

    return check


@dataclass(frozen=True)
class Honoured:
    value: object
    check: Callable[[ServiceSpec], object]
    expected: object
    prep: Callable[[Doc], None] | None = None


@dataclass(frozen=True)
class Ignored:
    value: object


@dataclass(frozen=True)
class Refused:
    value: object
    words: tuple[str, ...]
    prep: Callable[[Doc], None] | None = None
    at: str = ""  # where to put the value when not at the field's own path


@dataclass(frozen=True)
class PlanRefused:
    """Loads, and the catalog refuses it when the stacks are planned (one line)."""

    value: object
    cloud: str
    region: str
    words: tuple[str, ...]
    prep: Callable[[Doc], None] | None = None


Case = Honoured | Ignored | Refused | PlanRefused


@dataclass(frozen=True)
class Row:
    cases: tuple[Case, ...] = field(default_factory=tuple)


def _row(*cases: Case) -> Row:
    return Row(cases)


def _probe(spec: ServiceSpec) -> Any:
    return spec.service.readiness_probe


def _policy(spec: ServiceSpec) -> Any:
    return spec.service.replica_policy


# service.tls's files: a self-signed pair, made once for the module's rows.
_TLS_DIR = Path(tempfile.mkdtemp(prefix="hf-tls-"))
atexit.register(shutil.rmtree, _TLS_DIR, ignore_errors=True)
_PAIR = make_pair(_TLS_DIR)
_TLS = {"keyfile": str(_PAIR.keyfile), "certfile": str(_PAIR.certfile)}

ROWS: dict[str, Row] = {
    # -- the task --------------------------------------------------------------------------
    "name": _row(Ignored("other")),
    "workdir": _row(
        Refused(".", ("not supported", "resources.image_id", "setup")),
        Refused({"url": "https://github.com/x/y", "ref": "main"}, ("git clone", "setup")),
    ),
    "event_callback": _row(Ignored("echo done")),
    "num_nodes": _row(
        Honoured(1, lambda s: s.name, "svc"),
        Refused(2, ("2 nodes per replica is not supported", "num_nodes: 1", "more GPUs")),
    ),
    "resources": _row(Honoured({"cloud": "gcp"}, lambda s: s.resources.cloud, "gcp")),
    "file_mounts": _row(
        Refused({"/data": "s3://bucket"}, ("not supported", "image_id", "setup")),
    ),
    "service": _row(Honoured({"replicas": 2}, lambda s: _policy(s).min_replicas, 2)),
    "pool": _row(Refused({"workers": 2}, ("managed jobs", "service:"))),
    "setup": _row(Honoured("pip install vllm", lambda s: s.setup, "pip install vllm")),
    "run": _row(Honoured("vllm serve m", lambda s: s.run, "vllm serve m")),
    "envs": _row(
        Honoured({"MODEL": "m", "N": 2}, lambda s: dict(s.envs), {"MODEL": "m", "N": "2"})
    ),
    "secrets": _row(
        Honoured({"HF_TOKEN": None}, lambda s: sorted(s.secret_env_names), ["HF_TOKEN"]),
        Refused(["my-managed-secret"], ("managed secret store", "secrets: {NAME: null}")),
    ),
    "managed_secrets": _row(Refused(["tok"], ("managed secret store", "secrets: {NAME: null}"))),
    "inputs": _row(Ignored({"s3://bucket": 10})),
    "outputs": _row(Ignored({"s3://bucket": 1})),
    "file_mounts_mapping": _row(Refused({}, ("written by SkyPilot's client", "remove it"))),
    "config": _row(Refused({"aws": {"vpc_name": "v"}}, ("settings.yaml",))),
    "volumes": _row(Refused({"data": "/mnt"}, ("volumes are not created", "disk_size"))),
    "volume_mounts": _row(Refused([], ("volumes are not created", "disk_size"))),
    "api_server_access": _row(Refused(True, ("no SkyPilot API server",))),
    "_metadata": _row(Refused({}, ("written by SkyPilot's client", "remove it"))),
    # -- service ---------------------------------------------------------------------------
    "service.readiness_probe": _row(
        Honoured("/ready", lambda s: _probe(s).path, "/ready"),
        Honoured({"path": "/ready"}, lambda s: _probe(s).path, "/ready"),
    ),
    "service.readiness_probe.path": _row(
        Honoured("/v1/models", lambda s: _probe(s).path, "/v1/models")
    ),
    "service.readiness_probe.initial_delay_seconds": _row(
        Honoured(600, lambda s: _probe(s).initial_delay_seconds, 600)
    ),
    "service.readiness_probe.timeout_seconds": _row(
        Honoured(30, lambda s: _probe(s).timeout_seconds, 30),
        Refused(300, ("aws load balancer health check waits 2-120 s",)),
    ),
    "service.readiness_probe.endpoint_probe_interval_seconds": _row(
        Refused(5, ("not supported", "cadence", "remove it"))
    ),
    "service.readiness_probe.consecutive_failure_threshold_timeout": _row(
        Honoured(60, lambda s: _probe(s).consecutive_failure_threshold_timeout, 60)
    ),
    "service.readiness_probe.post_data": _row(
        Honoured({"prompt": "hi"}, lambda s: dict(_probe(s).post_data), {"prompt": "hi"}, _local),
        Refused({"prompt": "hi"}, ("cannot send a POST body", "local sandbox")),
    ),
    "service.readiness_probe.headers": _row(
        Honoured({"X-K": "v"}, lambda s: dict(_probe(s).headers), {"X-K": "v"}, _local),
        Refused({"X-K": "v"}, ("cannot send headers", "local sandbox")),
    ),
    "service.load_balancer": _row(
        Refused({"stream_timeout_seconds": 600}, ("idle timeouts are fixed", "remove it"))
    ),
    "service.pool": _row(Refused({"workers": 2}, ("managed jobs", "replica_policy"))),
    "service.replica_policy": _row(
        Honoured({"min_replicas": 2}, lambda s: (_policy(s).min_replicas, _policy(s).upper), (2, 2))
    ),
    "service.replica_policy.min_replicas": _row(Honoured(2, lambda s: _policy(s).min_replicas, 2)),
    "service.replica_policy.max_replicas": _row(Honoured(7, lambda s: _policy(s).max_replicas, 7)),
    "service.replica_policy.num_overprovision": _row(
        Honoured(2, lambda s: _policy(s).num_overprovision, 2)
    ),
    "service.replica_policy.target_qps_per_replica": _row(
        Honoured(2.5, lambda s: _policy(s).target_qps_per_replica, 2.5),
        Honoured(
            {"L4": 2, "A10G": 3},
            lambda s: dict(_policy(s).target_qps_per_accelerator),
            {"L4": 2.0, "A10G": 3.0},
            _instance_aware,
        ),
    ),
    "service.replica_policy.dynamic_ondemand_fallback": _row(
        Honoured(True, lambda s: _policy(s).dynamic_ondemand_fallback, True)
    ),
    "service.replica_policy.base_ondemand_fallback_replicas": _row(
        Honoured(1, lambda s: _policy(s).base_ondemand_fallback_replicas, 1)
    ),
    "service.replica_policy.spot_placer": _row(
        Honoured("dynamic_fallback", lambda s: _policy(s).spot_placer, "dynamic_fallback")
    ),
    "service.replica_policy.upscale_delay_seconds": _row(
        Honoured(60, lambda s: _policy(s).upscale_delay_seconds, 60)
    ),
    "service.replica_policy.downscale_delay_seconds": _row(
        Honoured(90, lambda s: _policy(s).downscale_delay_seconds, 90)
    ),
    "service.ports": _row(Honoured(8081, lambda s: s.service.ports, 8081)),
    "service.replicas": _row(
        Honoured(
            3, lambda s: (_policy(s).min_replicas, _policy(s).max_replicas), (3, 3), _no_policy
        )
    ),
    "service.workers": _row(Refused(2, ("managed jobs", "replica_policy"), _no_policy)),
    # What the aws and gcp modules are given (their load balancers' algorithm).
    "service.load_balancing_policy": _row(
        Honoured("least_load", module_balancing, "least_load"),
        Honoured("round_robin", module_balancing, "round_robin"),
    ),
    "service.tls": _row(
        Honoured(_TLS, lambda s: s.service.tls, TLSFiles(**_TLS), _local),
        Refused(_TLS, ("local sandbox only: on aws", "aws_certificate_arns")),
        Refused({**_TLS, "keyfile": "/nonexistent/k.pem"}, ("keyfile: no such file",), _local),
    ),
    # -- resources -------------------------------------------------------------------------
    "resources.cloud": _row(
        Honoured("AWS", lambda s: s.resources.cloud, "aws"),
        Refused("kubernetes", ("must be one of aws, gcp, azure, local",)),
    ),
    "resources.region": _row(Honoured("us-west-2", lambda s: s.resources.region, "us-west-2")),
    "resources.zone": _row(Honoured("us-east-1b", lambda s: s.resources.zone, "us-east-1b")),
    # SkyPilot's meaning (sky/utils/infra_utils.py InfraInfo.from_str): `*` is "any" in a
    # part, `k8s/<context>` and `ssh/<pool>` are not VMs; Hedgeform needs the cloud named.
    "resources.infra": _row(
        Honoured(
            "aws/us-east-1/us-east-1a",
            lambda s: s.resources.locations,
            (Location("aws", "us-east-1", "us-east-1a"),),
            _no_location,
        ),
        Honoured("gcp", lambda s: s.resources.locations, (Location("gcp"),), _no_location),
        Honoured("aws/*", lambda s: s.resources.locations, (Location("aws"),), _no_location),
        Honoured("azure/", lambda s: s.resources.locations, (Location("azure"),), _no_location),
        Honoured(
            "aws/us-east-1/*",
            lambda s: s.resources.locations,
            (Location("aws", "us-east-1"),),
            _no_location,
        ),
        Honoured(  # the zone names its region, as in SkyPilot
            "aws/*/us-west-2b",
            lambda s: sorted(expand_locations(s, {}).items()),
            [("us-west-2b", ("aws", "us-west-2"))],
            _no_location,
        ),
        Refused("*", ("means any cloud", "infra: aws/us-east-1", "any_of"), _no_location),
        Refused("*/us-east-1", ("any cloud", "name it, e.g. infra: aws/us-east-1"), _no_location),
        Refused("k8s/my/context", ("is Kubernetes", "write e.g. infra: aws/"), _no_location),
        Refused("ssh/my-pool", ("an SSH node pool", "write e.g. infra: aws/"), _no_location),
        Refused("lambda/us-east-1", ("'lambda' is not one Hedgeform", "aws, gcp"), _no_location),
        Refused("aws/us-east-1", ("cannot be combined with cloud/region/zone",)),
    ),
    # Checked when the stacks are planned: the catalog runs only a type that has them.
    "resources.cpus": _row(
        Honoured("4+", _instance("aws", "us-east-1"), ("g6.xlarge", "L4", 1), _gpus("L4")),
        Honoured("8", _instance("gcp", "us-central1"), ("g2-standard-8", "L4", 1), _gpus("L4")),
        Honoured("8+", _instance("aws", "us-east-1"), ("m6i.2xlarge", "", 0)),
        PlanRefused(
            "32+", "aws", "us-east-1", ("g6.xlarge: 4 vCPUs", "instance_types"), _gpus("L4")
        ),
    ),
    "resources.memory": _row(
        Honoured(
            "32+",
            _instance("aws", "us-east-1"),
            ("g6e.xlarge", "L40S", 1),
            _gpus({"L4": 1, "L40S": 1}),
        ),
        PlanRefused("64+", "aws", "us-east-1", ("16 GiB", "instance_types"), _gpus("L4")),
    ),
    "resources.accelerators": _row(
        Honoured("L4:2", lambda s: s.resources.accelerators, (Accelerator("L4", 2),))
    ),
    # n1-standard-8 carries a T4 or a V100 attached: without the accelerator it is refused.
    "resources.instance_type": _row(
        Honoured("g6.xlarge", _instance("aws", "us-east-1"), ("g6.xlarge", "L4", 1)),
        Honoured(
            "Standard_NC24ads_A100_v4",
            _instance("azure", "eastus"),
            ("Standard_NC24ads_A100_v4", "A100-80GB", 1),
            _on("azure", "eastus"),
        ),
        PlanRefused("g6.2xlarge", "aws", "us-east-1", ("not in the aws catalog", "instance_types")),
        PlanRefused(
            "n1-standard-8", "gcp", "us-central1", ("T4:1", "name one"), _on("gcp", "us-central1")
        ),
        Refused("g6.xlarge", ("local sandbox has no instance types",), _local),
    ),
    "resources.use_spot": _row(Honoured(False, lambda s: s.resources.use_spot, False)),
    "resources.job_recovery": _row(Ignored("FAILOVER")),
    "resources.spot_recovery": _row(Ignored("FAILOVER")),
    "resources.volumes": _row(Refused([{"path": "/d"}], ("volumes are not created", "disk_size"))),
    "resources.disk_size": _row(
        Honoured(256, lambda s: s.resources.disk_size, 256),
        Honoured("1TB", lambda s: s.resources.disk_size, 1024),
        Refused("0.5GB", ("whole number of GB",)),
    ),
    "resources.ephemeral_storage": _row(Refused(100, ("deprecated", "resources.disk_size"))),
    "resources.disk_tier": _row(
        Honoured("medium", lambda s: s.resources.disk_tier, "medium"),
        Honoured("high", lambda s: s.resources.disk_tier, "high", _on("azure", "eastus")),
        Refused("high", ("not provisioned on aws", "gp3", "disk_tier: medium")),
        Refused("best", ("not provisioned", "disk_tier: medium")),
    ),
    "resources.network_tier": _row(
        Honoured("standard", lambda s: s.resources.network_tier, "standard"),
        Refused("best", ("not provisioned", "network_tier: standard")),
    ),
    "resources.local_disk": _row(Refused("nvme", ("not attached", "disk_size"))),
    "resources.max_hourly_cost": _row(Refused(2.5, ("catalog", "instance_type"))),
    "resources.ports": _row(
        Honoured(
            "8080-8081",
            lambda s: s.resources.ports,
            (8080, 8081),
            lambda d: _put(d, "service.ports", 8080),
        ),
        Honoured([8081], lambda s: s.resources.ports, (8081,)),
    ),
    "resources.labels": _row(Refused({"team": "ml"}, ("tags", "settings.yaml"))),
    "resources.accelerator_args": _row(Refused({"tpu_vm": True}, ("TPU", "GPU"))),
    "resources.image_id": _row(
        Honoured("ami-0123456789abcdef0", lambda s: s.resources.image_id, "ami-0123456789abcdef0"),
        Refused({"us-east-1": "ami-0123456789abcdef0"}, ("per region", "aws_images")),
    ),
    "resources.autostop": _row(Refused(10, ("never stop", "min_replicas: 0"))),
    "resources.priority": _row(Ignored(10)),
    "resources.priority_class": _row(Refused("high", ("Kubernetes", "remove it"))),
    "resources.any_of": _row(
        Honoured(
            [{"infra": "aws/us-east-1"}, {"cloud": "gcp", "region": "us-central1"}],
            lambda s: s.resources.locations,
            (Location("aws", "us-east-1"), Location("gcp", "us-central1")),
            _no_location,
        ),
        Refused(
            [{"infra": "aws/us-east-1", "use_spot": False}],
            ("not supported in an any_of entry", "resources.use_spot"),
            _no_location,
            at="resources.any_of",
        ),
    ),
    "resources.ordered": _row(Refused([{"cloud": "aws"}], ("any_of",), _no_location)),
    "resources._*": _row(
        Refused({}, ("internal to SkyPilot", "remove it"), at="resources._docker_login_config")
    ),
}


def _put(doc: Doc, path: str, value: object) -> None:
    """Set `value` at the dotted `path` (a readiness probe's path shorthand becomes a map)."""
    *parents, key = path.split(".")
    node = doc
    for name in parents:
        child = node.get(name)
        if isinstance(child, str):
            child = {"path": child}
        node[name] = child if child is not None else {}
        node = node[name]
    node[key] = value


def _document(path: str, case: Case) -> Doc:
    doc = copy.deepcopy(BASE)
    prep = getattr(case, "prep", None)
    if prep is not None:
        prep(doc)
    where = getattr(case, "at", "") or path
    if where == "resources.any_of":
        doc["resources"]["any_of"] = case.value
    else:
        _put(doc, where, case.value)
    return doc


def _parse(doc: Doc) -> ServiceSpec:
    return parse_spec(doc, name="svc", source="svc.yaml")


@pytest.mark.parametrize("path", list(ROWS), ids=list(ROWS))
def test_skyserve_field(path: str) -> None:
    for case in ROWS[path].cases:
        doc = _document(path, case)
        if isinstance(case, Honoured):
            assert case.check(_parse(doc)) == case.expected, (path, case.value)
        elif isinstance(case, Ignored):
            spec = _parse(doc)
            assert f"{path}: accepted and ignored: " in " | ".join(spec.notes), path
        elif isinstance(case, PlanRefused):
            spec = _parse(doc)
            with pytest.raises(CloudConfigError) as caught:
                instance_for_region(spec.resources, case.cloud, case.region)
            line = str(caught.value)
            assert line.startswith(f"{path}: ") and "\n" not in line
            assert all(word in line for word in case.words), (line, case.words)
        else:
            with pytest.raises(SpecError) as refused:
                _parse(doc)
            (line,) = refused.value.problems
            where = case.at if case.at and case.at != "resources.any_of" else path
            assert line.startswith(f"{where}"), (line, where)
            assert all(word in line for word in case.words), (line, case.words)


def _doc_rows() -> dict[str, tuple[str, str]]:
    """docs/spec.md's table: field -> (behaviour, test)."""
    rows = {}
    for line in DOCS_SPEC.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\| `([^`]+)` \| (.+) \| `([^`]+)` \|", line.strip())
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return rows


def test_docs_spec_has_a_row_per_field_and_test() -> None:
    rows = _doc_rows()
    assert sorted(rows) == sorted(ROWS)
    for path, (behaviour, test) in rows.items():
        assert test == f"test_skyserve_field[{path}]", path
        kinds = {type(case) for case in ROWS[path].cases}
        words = {
            Honoured: "honoured",
            Ignored: "accepted and ignored",
            Refused: "refused",
            PlanRefused: "refused",
        }
        for kind in kinds:
            assert words[kind] in behaviour.lower(), (path, words[kind])


def test_every_field_the_loader_knows_has_a_row() -> None:
    sections = {
        "": schema.TOP_LEVEL,
        "service": schema.SERVICE,
        "service.readiness_probe": schema.READINESS_PROBE,
        "service.replica_policy": schema.REPLICA_POLICY,
        "resources": schema.RESOURCES,
    }
    known = {f"{path}.{key}" if path else key for path, keys in sections.items() for key in keys}
    known |= {f"{path}.{key}" if path else key for path, key in schema.UNSUPPORTED}
    known |= {f"{path}.{key}" if path else key for path, key in schema.IGNORED}
    assert sorted(known - set(ROWS)) == []


def test_plan_prints_a_note_for_each_field_it_ignores(tmp_path: Path) -> None:
    """An accepted-and-ignored field is said at plan time, not only kept on the spec."""
    from click.testing import CliRunner

    from reconciler.cli import main

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "services").mkdir()
    text = (repo / "services" / "llama.yaml").read_text()
    (tmp_path / "services" / "nl.yaml").write_text("name: my-llama\n" + text)
    (tmp_path / "terraform").symlink_to(repo / "terraform")
    result = CliRunner().invoke(main, ["plan", "nl", "--root", str(tmp_path), "--render-only"])
    assert result.exit_code == 0, result.output
    assert "note: name: accepted and ignored: the service is named after its file" in result.output
