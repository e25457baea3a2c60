"""One test per validation rule: each broken document yields the expected problem line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reconciler.errors import SpecError
from reconciler.spec import parse_spec

Problems = Callable[[object], tuple[str, ...]]


def policy(doc: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = doc["service"]["replica_policy"]
    return result


def test_base_document_is_valid(base: dict[str, Any]) -> None:
    spec = parse_spec(base, name="svc", source="svc.yaml")
    assert spec.service.replica_policy.max_replicas == 3


@pytest.mark.parametrize(
    ("where", "key", "expected"),
    [
        (
            "policy",
            "min_replica",
            "service.replica_policy.min_replica: unknown field; did you mean 'min_replicas'?",
        ),
        ("top", "servce", "servce: unknown field; did you mean 'service'?"),
        (
            "resources",
            "acelerators",
            "resources.acelerators: unknown field; did you mean 'accelerators'?",
        ),
        ("probe", "Path", "service.readiness_probe.Path: unknown field; did you mean 'path'?"),
        ("top", "use_spot", "use_spot: unknown field here; did you mean 'resources.use_spot'?"),
    ],
)
def test_unknown_field_did_you_mean(
    base: dict[str, Any], problems_for: Problems, where: str, key: str, expected: str
) -> None:
    base["service"]["readiness_probe"] = {"path": "/health"}
    target = {
        "policy": policy(base),
        "top": base,
        "resources": base["resources"],
        "probe": base["service"]["readiness_probe"],
    }[where]
    target[key] = True
    assert problems_for(base) == (expected,)


def test_unknown_field_without_close_match_lists_allowed(
    base: dict[str, Any], problems_for: Problems
) -> None:
    base["service"]["zzz"] = 1
    (line,) = problems_for(base)
    assert line.startswith("service.zzz: unknown field; allowed: readiness_probe, replicas,")


def test_unknown_field_in_any_of_entry(base: dict[str, Any], problems_for: Problems) -> None:
    del base["resources"]["cloud"], base["resources"]["region"]
    base["resources"]["any_of"] = [{"cloud": "aws", "regoin": "us-east-1"}]
    assert problems_for(base) == (
        "resources.any_of[0].regoin: unknown field; did you mean 'region'?",
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("min_replicas", True, "must be an integer from 0 to 1000, got true (a boolean)"),
        ("min_replicas", "2", "must be an integer from 0 to 1000, got '2' (a string)"),
        ("min_replicas", -1, "must be from 0 to 1000, got -1"),
        ("max_replicas", 2.5, "must be an integer from 0 to 1000, got 2.5 (a number)"),
        ("num_overprovision", -1, "must be from 0 to 1000, got -1"),
        (
            "num_overprovision",
            10**30,
            "must be from 0 to 1000, got an integer of more than 20 digits",
        ),
        ("upscale_delay_seconds", -5, "must be from 0 to 604800, got -5"),
        (
            "downscale_delay_seconds",
            False,
            "must be an integer from 0 to 604800, got false (a boolean)",
        ),
        ("target_qps_per_replica", 0, "must be a number from 0.001 to 1e+06, got 0"),
        (
            "target_qps_per_replica",
            True,
            "must be a number from 0.001 to 1e+06, got true (a boolean)",
        ),
        # issue 9: 1e-320 passed, then qps / target overflowed to inf in the autoscaler
        (
            "target_qps_per_replica",
            1e-320,
            "must be a number from 0.001 to 1e+06, got 9.99989e-321",
        ),
        (
            "target_qps_per_replica",
            10**30,
            "must be a number from 0.001 to 1e+06, got an integer of more than 20 digits",
        ),
        ("dynamic_ondemand_fallback", "yes", "must be true or false, got 'yes' (a string)"),
        ("dynamic_ondemand_fallback", 1, "must be true or false, got 1 (an integer)"),
        ("spot_placer", "random", "must be one of dynamic_fallback; got 'random' (a string)"),
    ],
)
def test_replica_policy_types_and_ranges(
    base: dict[str, Any], problems_for: Problems, key: str, value: object, expected: str
) -> None:
    policy(base)[key] = value
    assert f"service.replica_policy.{key}: {expected}" in problems_for(base)


def test_min_replicas_must_not_exceed_max(base: dict[str, Any], problems_for: Problems) -> None:
    policy(base).update(min_replicas=3, max_replicas=2)
    assert problems_for(base) == (
        "service.replica_policy.min_replicas: must be <= max_replicas (3 > 2)",
    )


def test_autoscaling_needs_a_target(base: dict[str, Any], problems_for: Problems) -> None:
    del policy(base)["target_qps_per_replica"]
    (line,) = problems_for(base)
    assert line.startswith(
        "service.replica_policy.target_qps_per_replica: required when max_replicas > "
        "min_replicas (3 > 1)"
    )


def test_fixed_size_needs_no_target(base: dict[str, Any]) -> None:
    base["service"]["replica_policy"] = {"min_replicas": 2, "max_replicas": 2}
    spec = parse_spec(base, name="svc", source="svc.yaml")
    assert spec.service.replica_policy.target_qps_per_replica is None


def test_zero_replicas_forever_is_an_error(base: dict[str, Any], problems_for: Problems) -> None:
    base["service"]["replica_policy"] = {"min_replicas": 0}
    (line,) = problems_for(base)
    assert line.startswith("service.replica_policy.min_replicas: 0 needs max_replicas >= 1")


def test_base_ondemand_fallback_at_most_min(base: dict[str, Any], problems_for: Problems) -> None:
    policy(base)["base_ondemand_fallback_replicas"] = 2
    assert problems_for(base) == (
        "service.replica_policy.base_ondemand_fallback_replicas: must be <= min_replicas (2 > 1)",
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dynamic_ondemand_fallback", True),
        ("base_ondemand_fallback_replicas", 1),
        ("spot_placer", "dynamic_fallback"),
    ],
)
def test_spot_features_require_use_spot(
    base: dict[str, Any], problems_for: Problems, key: str, value: object
) -> None:
    base["resources"]["use_spot"] = False
    policy(base)[key] = value
    assert problems_for(base) == (
        f"service.replica_policy.{key}: requires resources.use_spot: true "
        "(it only applies to spot replicas)",
    )


def test_spot_features_off_need_no_spot(base: dict[str, Any]) -> None:
    base["resources"]["use_spot"] = False
    policy(base).update(dynamic_ondemand_fallback=False, base_ondemand_fallback_replicas=0)
    assert parse_spec(base, name="svc", source="x").resources.use_spot is False


def test_replicas_and_replica_policy_conflict(base: dict[str, Any], problems_for: Problems) -> None:
    base["service"]["replicas"] = 2
    (line,) = problems_for(base)
    assert line.startswith("service.replicas: cannot be combined with service.replica_policy")


def test_load_balancing_policy_choices(base: dict[str, Any], problems_for: Problems) -> None:
    base["service"]["load_balancing_policy"] = "random"
    assert problems_for(base) == (
        "service.load_balancing_policy: must be one of round_robin, least_load, "
        "instance_aware_least_load; "
        "got 'random' (a string)",
    )


def test_service_section_is_required(base: dict[str, Any], problems_for: Problems) -> None:
    del base["service"]
    (line,) = problems_for(base)
    assert line.startswith("service: required")


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ({"cloud": "oracle"}, "resources.cloud: must be one of aws, gcp, azure, local"),
        ({"cloud": "aws", "region": "US_East"}, "resources.region: 'US_East' (a string) is not"),
        ({"cloud": "aws", "region": "a" * 64}, "resources.region: 'aaaa"),
        ({"cloud": "aws", "zone": "us-east-1a;rm"}, "resources.zone: 'us-east-1a;rm' (a string)"),
        ({"zone": "us-east-1a"}, "resources.zone: a zone without a region needs 'cloud'"),
        ({"cloud": 3}, "resources.cloud: must be a string, got 3 (an integer)"),
    ],
)
def test_location_rules(
    base: dict[str, Any], problems_for: Problems, location: dict[str, Any], expected: str
) -> None:
    del base["resources"]["cloud"], base["resources"]["region"]
    base["resources"].update(location)
    (line,) = problems_for(base)
    assert line.startswith(expected)


@pytest.mark.parametrize(
    "location",
    [{"cloud": "aws", "zone": "us-east-1a"}, {"region": "us-east-1"}, {"cloud": "AWS"}],
)
def test_location_accepted(base: dict[str, Any], location: dict[str, Any]) -> None:
    del base["resources"]["cloud"], base["resources"]["region"]
    base["resources"].update(location)
    spec = parse_spec(base, name="svc", source="x")
    assert spec.resources.locations[0].cloud in ("aws", None)


@pytest.mark.parametrize(
    ("any_of", "expected"),
    [
        ([], "resources.any_of: must be a non-empty list"),
        ({"cloud": "aws"}, "resources.any_of: must be a non-empty list"),
        (["aws"], "resources.any_of[0]: must be a mapping, got 'aws' (a string)"),
        ([{"cloud": "aws"}, {"cloud": "aws"}], "resources.any_of[1]: duplicate location"),
        ([{"cloud": "gcp", "zone": "Z"}], "resources.any_of[0].zone: 'Z' (a string) is not"),
    ],
)
def test_any_of_rules(
    base: dict[str, Any], problems_for: Problems, any_of: object, expected: str
) -> None:
    del base["resources"]["cloud"], base["resources"]["region"]
    base["resources"]["any_of"] = any_of
    (line,) = problems_for(base)
    assert line.startswith(expected)


def test_any_of_with_top_level_location(base: dict[str, Any], problems_for: Problems) -> None:
    base["resources"]["any_of"] = [{"cloud": "gcp"}]
    (line,) = problems_for(base)
    assert line.startswith("resources.any_of: cannot be combined with resources.cloud/region/zone")


@pytest.mark.parametrize(
    ("accelerators", "expected"),
    [
        ("L4:0", "resources.accelerators: accelerator count must be a whole number >= 1"),
        ("L4:half", "resources.accelerators: accelerator count must be a whole number >= 1"),
        ({"L4": 0.5}, "resources.accelerators.L4: accelerator count must be a whole number"),
        ({"L4": True}, "resources.accelerators.L4: accelerator count must be a whole number"),
        ("L4; rm -rf /", "resources.accelerators: 'L4; rm -rf /' (a string) is not a valid"),
        (["L4", "L4:2"], "resources.accelerators: 'L4' is listed more than once"),
        (7, "resources.accelerators: must be 'NAME', 'NAME:COUNT', {NAME: COUNT} or a list"),
        ([["L4"]], "resources.accelerators[0]: must be 'NAME', 'NAME:COUNT' or {NAME: COUNT}"),
    ],
)
def test_accelerator_rules(
    base: dict[str, Any], problems_for: Problems, accelerators: object, expected: str
) -> None:
    base["resources"]["accelerators"] = accelerators
    (line,) = problems_for(base)
    assert line.startswith(expected)


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        (0, "resources.ports: must be a port 1-65535"),
        (65536, "resources.ports: must be a port 1-65535"),
        ("8082-8081", "resources.ports: must be a port 1-65535"),
        ("http", "resources.ports: must be a port 1-65535"),
        (True, "resources.ports: must be a port 1-65535"),
        ([8081, 70000], "resources.ports[1]: must be a port 1-65535"),
    ],
)
def test_resource_port_rules(
    base: dict[str, Any], problems_for: Problems, ports: object, expected: str
) -> None:
    base["resources"]["ports"] = ports
    (line,) = problems_for(base)
    assert line.startswith(expected)


@pytest.mark.parametrize(
    ("port", "expected"), [(0, "must be from 1 to 65535"), (70000, "must be from 1 to 65535")]
)
def test_service_port_range(
    base: dict[str, Any], problems_for: Problems, port: int, expected: str
) -> None:
    base["service"]["ports"] = port
    (line,) = problems_for(base)
    assert line.startswith(f"service.ports: {expected}")


def test_several_resource_ports_need_service_port(
    base: dict[str, Any], problems_for: Problems
) -> None:
    base["resources"]["ports"] = [8080, 8081]
    (line,) = problems_for(base)
    assert line.startswith("service.ports: required when resources.ports lists several ports")
    base["service"]["ports"] = 8081
    assert parse_spec(base, name="svc", source="x").service.ports == 8081


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("cpus", "lots", "resources.cpus: must be a number > 0"),
        ("cpus", 0, "resources.cpus: must be a number > 0"),
        ("memory", "-4", "resources.memory: must be a number > 0"),
        ("memory", True, "resources.memory: must be a number > 0"),
        ("disk_size", 0, "resources.disk_size: must be from 1 to 65536, got 0"),
        ("use_spot", "true", "resources.use_spot: must be true or false"),
        ("image_id", "ami 123", "resources.image_id: must be non-empty, without spaces"),
    ],
)
def test_resource_scalar_rules(
    base: dict[str, Any], problems_for: Problems, key: str, value: object, expected: str
) -> None:
    base["resources"][key] = value
    (line,) = problems_for(base)
    assert line.startswith(expected)


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        ("health", "service.readiness_probe: must start with '/'"),
        ({"path": "/a b"}, "service.readiness_probe.path: must start with '/' and contain no"),
        ({"path": "/h", "timeout_seconds": 0}, "service.readiness_probe.timeout_seconds: must be"),
        ({"initial_delay_seconds": -1}, "service.readiness_probe.initial_delay_seconds: must be"),
        ({"headers": {"X-A": "a\r\nb"}}, "service.readiness_probe.headers.X-A: header values"),
        ({"headers": {"bad name": "v"}}, "service.readiness_probe.headers.'bad name': header"),
        ({"post_data": [1]}, "service.readiness_probe.post_data: must be a string or a mapping"),
        (5, "service.readiness_probe: must be a mapping, got 5 (an integer)"),
    ],
)
def test_readiness_probe_rules(
    base: dict[str, Any], problems_for: Problems, probe: object, expected: str
) -> None:
    base["service"]["readiness_probe"] = probe
    (line,) = problems_for(base)
    assert line.startswith(expected)


@pytest.mark.parametrize(
    ("envs", "expected"),
    [
        ({"1BAD": "x"}, "envs.1BAD: '1BAD' (a string) is not a valid name"),
        ({"A-B": "x"}, "envs.A-B: 'A-B' (a string) is not a valid name"),
        ({"OK": ["x"]}, "envs.OK: must be a string, number, true/false or null"),
        (["A=1"], "envs: must be a mapping of NAME: value, got a list"),
        # found by the user-eye check: both passed, then every apply failed with a bare
        # "local-exec provisioner error" (E2BIG, or a NUL no exec can pass)
        ({"MODEL_NAME": "a\x00b"}, "envs.MODEL_NAME: holds a NUL character"),
        ({"MODEL_NAME": "x" * 200_000}, "envs.MODEL_NAME: longer than 124 KiB"),
    ],
)
def test_env_rules(
    base: dict[str, Any], problems_for: Problems, envs: object, expected: str
) -> None:
    base["envs"] = envs
    (line,) = problems_for(base)
    assert line.startswith(expected)


def test_env_in_envs_and_secrets(base: dict[str, Any], problems_for: Problems) -> None:
    base["envs"] = {"TOKEN": "a"}
    base["secrets"] = {"TOKEN": None}
    (line,) = problems_for(base)
    assert line.startswith("secrets.TOKEN: already set in envs")


@pytest.mark.parametrize("key", ["setup", "run"])
def test_setup_and_run_are_strings(base: dict[str, Any], problems_for: Problems, key: str) -> None:
    base[key] = ["pip install vllm"]
    assert problems_for(base) == (f"{key}: must be a string, got a list",)


def test_non_string_keys_are_rejected(base: dict[str, Any], problems_for: Problems) -> None:
    base["service"][3] = "x"
    assert problems_for(base) == ("service.3: field names must be strings, got 3 (an integer)",)


def test_all_problems_reported_at_once(base: dict[str, Any]) -> None:
    policy(base).update(min_replica=2, target_qps_per_replica=-1)
    base["resources"]["cloud"] = "ibm"
    with pytest.raises(SpecError) as caught:
        parse_spec(base, name="svc", source="svc.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith("svc.yaml: ") for line in lines)
    assert [line.split(": ")[1] for line in lines] == [
        "service.replica_policy.min_replica",
        "service.replica_policy.target_qps_per_replica",
        "resources.cloud",
    ]
    assert len(caught.value.problems) == 3


def test_invalid_field_does_not_cause_follow_up_errors(
    base: dict[str, Any], problems_for: Problems
) -> None:
    policy(base).update(min_replicas="three", max_replicas=0)
    assert problems_for(base) == (
        "service.replica_policy.min_replicas: "
        "must be an integer from 0 to 1000, got 'three' (a string)",
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "hint"),
    [
        ("resources", "cloud", "awss", "did you mean 'aws'?"),
        ("policy", "spot_placer", "dynamic", "did you mean 'dynamic_fallback'?"),
        ("service", "load_balancing_policy", "least-load", "did you mean 'least_load'?"),
    ],
)
def test_bad_choice_did_you_mean(
    base: dict[str, Any], problems_for: Problems, section: str, key: str, value: str, hint: str
) -> None:
    target = {"resources": base["resources"], "policy": policy(base), "service": base["service"]}
    target[section][key] = value
    (line,) = problems_for(base)
    assert line.endswith(hint)


def test_skyserve_tls_is_refused_on_aws_in_one_line_saying_what_to_do(
    base: dict[str, Any], problems_for: Problems
) -> None:
    """SkyServe's service.tls (key and certificate files) would put a private key in
    Terraform's state on a cloud: refused there, pointing at the ACM setting (issue 11); the
    sandbox serves it (tests/spec/test_spec_tls.py)."""
    base["service"]["tls"] = {"keyfile": "/etc/k.pem", "certfile": "/etc/c.pem"}
    (line,) = problems_for(base)
    assert line.startswith("service.tls: served by the local sandbox only: on aws ")
    assert "aws_certificate_arns" in line
