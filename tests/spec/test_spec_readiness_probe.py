"""The readiness probe in the spec: SkyServe's consecutive_failure_threshold_timeout, JSON
post_data, and the per-cloud refusals of what a load balancer health check cannot carry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reconciler.errors import SpecError
from reconciler.spec import ReadinessProbe, ServiceSpec, parse_spec
from reconciler.spec.service import load_balancer_health_check

Problems = Callable[[object], tuple[str, ...]]
LOCATIONS = {
    "aws": {"cloud": "aws", "region": "us-east-1"},
    "gcp": {"cloud": "gcp", "region": "us-central1"},
    "azure": {"cloud": "azure", "region": "eastus"},
    "local": {"cloud": "local", "region": "local-1", "zone": "local-1a"},
}


def parse(doc: dict[str, Any]) -> ServiceSpec:
    return parse_spec(doc, name="svc", source="svc.yaml")


def on(doc: dict[str, Any], *clouds: str, **probe: object) -> dict[str, Any]:
    """`doc` placed on `clouds` (one any_of entry each) with readiness probe `probe`."""
    doc["resources"] = {"any_of": [LOCATIONS[c] for c in clouds], "use_spot": True, "ports": 80}
    doc["service"]["readiness_probe"] = {"path": "/health", **probe}
    return doc


# ---------------------------------------------------------------- consecutive failures


def test_consecutive_failure_threshold_defaults_to_skyserves_180(base: dict[str, Any]) -> None:
    assert parse(base).service.readiness_probe.consecutive_failure_threshold_timeout == 180
    assert ReadinessProbe().consecutive_failure_threshold_timeout == 180


def test_consecutive_failure_threshold_is_read(base: dict[str, Any]) -> None:
    on(base, "aws", consecutive_failure_threshold_timeout=45)
    assert parse(base).service.readiness_probe.consecutive_failure_threshold_timeout == 45


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "must be from 1 to 86400, got 0"),
        (-5, "must be from 1 to 86400, got -5"),
        (86_401, "must be from 1 to 86400, got 86401"),
        (10**30, "must be from 1 to 86400, got an integer of more than 20 digits"),
        (1.5, "must be an integer from 1 to 86400, got 1.5 (a number)"),
        ("3m", "must be an integer from 1 to 86400, got '3m' (a string)"),
        (True, "must be an integer from 1 to 86400, got true (a boolean)"),
    ],
)
def test_consecutive_failure_threshold_rules(
    base: dict[str, Any], problems_for: Problems, value: object, expected: str
) -> None:
    on(base, "aws", consecutive_failure_threshold_timeout=value)
    assert problems_for(base) == (
        f"service.readiness_probe.consecutive_failure_threshold_timeout: {expected}",
    )


def test_a_misspelt_field_gets_a_did_you_mean(base: dict[str, Any], problems_for: Problems) -> None:
    on(base, "aws", consecutive_failure_threshold=60)
    (line,) = problems_for(base)
    assert line == (
        "service.readiness_probe.consecutive_failure_threshold: unknown field; "
        "did you mean 'consecutive_failure_threshold_timeout'?"
    )


# ---------------------------------------------------------------- post_data must be JSON


def test_a_json_string_post_data_is_accepted(base: dict[str, Any]) -> None:
    on(base, "local", post_data='{"model": "$MODEL_NAME", "max_tokens": 1}')
    assert parse(base).service.readiness_probe.post_data == (
        '{"model": "$MODEL_NAME", "max_tokens": 1}'
    )


@pytest.mark.parametrize(
    ("post_data", "expected"),
    [
        ("model=m", "a string must be JSON (SkyServe sends it parsed, as the JSON body): "),
        ('{"max_tokens": $N}', "put variables inside JSON strings"),
        ({"when": float("nan")}, "must hold only JSON values"),
        ({"tags": {"a", "b"}}, "must hold only JSON values"),
    ],
)
def test_post_data_that_is_not_json_is_refused(
    base: dict[str, Any], problems_for: Problems, post_data: object, expected: str
) -> None:
    on(base, "local", post_data=post_data)
    (line,) = problems_for(base)
    assert line.startswith("service.readiness_probe.post_data: ") and expected in line


# ---------------------------------------------------------------- per-cloud refusals


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("headers", {"Authorization": "Bearer ${HF_TOKEN}"}, "cannot send headers"),
        ("post_data", {"model": "m"}, "cannot send a POST body"),
    ],
)
def test_cloud_load_balancers_refuse_headers_and_post(
    base: dict[str, Any], problems_for: Problems, cloud: str, field: str, value: object, what: str
) -> None:
    (line,) = problems_for(on(base, cloud, **{field: value}))
    assert line.startswith(
        f"service.readiness_probe.{field}: the {cloud} load balancer health check {what} "
    )
    assert f"on {cloud}, or serve on the local sandbox" in line
    assert "\n" not in line
    assert "HF_TOKEN" not in line  # the value is not repeated


def test_the_aws_headers_line_reads_as_documented(
    base: dict[str, Any], problems_for: Problems
) -> None:
    assert problems_for(on(base, "aws", headers={"X-Key": "v"})) == (
        "service.readiness_probe.headers: the aws load balancer health check cannot send "
        "headers (it can carry path, timeout, interval and thresholds); use a GET probe "
        "without headers on aws, or serve on the local sandbox",
    )


def test_one_line_per_cloud_and_field(base: dict[str, Any], problems_for: Problems) -> None:
    lines = problems_for(on(base, "aws", "gcp", "local", headers={"X": "1"}, post_data={"a": 1}))
    assert len(lines) == 4
    assert {(line.split(":")[0], line.split(" ")[2]) for line in lines} == {
        ("service.readiness_probe.headers", "aws"),
        ("service.readiness_probe.post_data", "aws"),
        ("service.readiness_probe.headers", "gcp"),
        ("service.readiness_probe.post_data", "gcp"),
    }


@pytest.mark.parametrize("resources", [{"cloud": "local"}, {}, {"any_of": [LOCATIONS["local"]]}])
def test_the_sandbox_carries_the_whole_probe(
    base: dict[str, Any], resources: dict[str, Any]
) -> None:
    on(
        base,
        "local",
        headers={"Authorization": "Bearer x"},
        post_data={"m": 1},
        timeout_seconds=600,
    )
    base["resources"] = {**resources, "use_spot": True, "ports": 80}
    probe = parse(base).service.readiness_probe
    assert probe.headers == {"Authorization": "Bearer x"}
    assert probe.timeout_seconds == 600


@pytest.mark.parametrize(
    ("cloud", "timeout", "refused"),
    [
        ("aws", 1, True),
        ("aws", 2, False),
        ("aws", 120, False),
        ("aws", 121, True),
        ("gcp", 299, False),
        ("gcp", 300, True),
        ("azure", 1, False),
        ("azure", 900, False),  # no timeout setting on Azure's probe: nothing to refuse
    ],
)
def test_timeouts_outside_a_cloud_range_are_refused(
    base: dict[str, Any], problems_for: Problems, cloud: str, timeout: int, refused: bool
) -> None:
    on(base, cloud, timeout_seconds=timeout)
    if not refused:
        assert parse(base).service.readiness_probe.timeout_seconds == timeout
        return
    (line,) = problems_for(base)
    assert line.startswith(
        f"service.readiness_probe.timeout_seconds: the {cloud} load balancer health check waits "
    )
    assert f"got {timeout}; use a timeout in that range on {cloud}" in line
    assert ("2-120 s" if cloud == "aws" else "1-299 s") in line


@pytest.mark.parametrize(
    ("envs", "refused"),
    [
        ({"KIND": "models"}, False),  # written in the spec: rendered into the path
        ({"KIND": None}, True),  # from the environment: would land in tfvars
        ({}, True),  # unset
    ],
)
def test_cloud_probe_paths_only_use_envs_written_in_the_spec(
    base: dict[str, Any], problems_for: Problems, envs: dict[str, Any], refused: bool
) -> None:
    on(base, "gcp")
    base["service"]["readiness_probe"]["path"] = "/v1/${KIND}"
    base["envs"] = envs
    if not refused:
        assert parse(base).service.readiness_probe.path == "/v1/${KIND}"
        return
    (line,) = problems_for(base)
    assert line.startswith("service.readiness_probe.path: the gcp load balancer health check path")
    assert "${KIND} must be an env with its value in the spec" in line


def test_a_secret_in_a_cloud_probe_path_is_refused(
    base: dict[str, Any], problems_for: Problems
) -> None:
    on(base, "aws")
    base["service"]["readiness_probe"]["path"] = "/health?token=$TOKEN"
    base["secrets"] = {"TOKEN": "s3cr3t"}
    (line,) = problems_for(base)
    assert line.startswith("service.readiness_probe.path: the aws load balancer")
    assert "s3cr3t" not in line


# ---------------------------------------------------------------- the health check mapping


@pytest.mark.parametrize(
    ("timeout", "failing", "interval"),
    [
        (15, 180, 16),  # SkyServe's defaults
        (5, 30, 10),  # the 10 s floor (SkyServe's probe cadence)
        (2, 1, 10),
        (120, 600, 121),  # the interval must exceed the timeout (AWS)
    ],
)
def test_load_balancer_health_check_from_the_probe(
    timeout: int, failing: int, interval: int
) -> None:
    """The balancer stops routing after two failed checks whatever the replacement threshold:
    taking a failing replica out of traffic is fast, replacing it is the policy's job."""
    probe = ReadinessProbe(timeout_seconds=timeout, consecutive_failure_threshold_timeout=failing)
    check = load_balancer_health_check(probe)
    assert (check.timeout_s, check.interval_s) == (timeout, interval)
    assert (check.healthy_threshold, check.unhealthy_threshold) == (2, 2)
    assert check.interval_s > check.timeout_s


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("timeout_seconds", 10_000_000_000, "must be from 1 to 3600, got 10000000000"),
        ("timeout_seconds", 3_601, "must be from 1 to 3600, got 3601"),
        ("initial_delay_seconds", 86_401, "must be from 0 to 86400, got 86401"),
    ],
)
def test_probe_times_have_an_upper_bound(
    base: dict[str, Any], field: str, value: int, expected: str
) -> None:
    """A 1e10 s timeout was accepted and crashed every later observe (OverflowError)."""
    with pytest.raises(SpecError) as err:
        parse(on(base, "local", **{field: value}))
    assert f"service.readiness_probe.{field}: {expected}" in str(err.value)


def test_a_non_ascii_header_value_is_refused(base: dict[str, Any]) -> None:
    """It loaded, then every observe raised UnicodeEncodeError (a traceback in status/run)."""
    with pytest.raises(SpecError) as err:
        parse(on(base, "local", headers={"X-U": "日本語"}))
    assert "service.readiness_probe.headers.X-U: header values must be ASCII" in str(err.value)


def test_a_header_that_becomes_non_ascii_from_an_env_is_refused(base: dict[str, Any]) -> None:
    doc = on(base, "local", headers={"X-U": "${U}"})
    doc["envs"] = {"U": "日本語"}
    with pytest.raises(SpecError) as err:
        parse(doc)
    assert "service.readiness_probe.headers.X-U: header values must be ASCII once" in str(err.value)
