"""HAProxy's own health check in the sandbox follows the service's readiness probe."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler.backends.sandbox import haproxy_check
from reconciler.sandbox.haproxy import HealthCheck
from reconciler.spec.model import ReadinessProbe, ServiceSection, ServiceSpec


def spec(probe: ReadinessProbe, **kw: object) -> ServiceSpec:
    return replace(ServiceSpec("svc", ServiceSection(readiness_probe=probe)), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("probe", "envs", "expected"),
    [
        # a GET probe: HAProxy checks the same path, with the same timeout (was GET /health, 2 s)
        (ReadinessProbe(path="/v1/models", timeout_seconds=15), {}, HealthCheck("/v1/models", 15)),
        (ReadinessProbe(path="/v1/${KIND}"), {"KIND": "models"}, HealthCheck("/v1/models", 15)),
        # HAProxy must not hold a body or headers (secrets): TCP connect; membership gates
        (ReadinessProbe(post_data={"prompt": "x"}, timeout_seconds=5), {}, HealthCheck(None, 5)),
        (ReadinessProbe(headers={"Authorization": "x"}), {}, HealthCheck(None, 15)),
        # a variable HAProxy would have to take from the environment or a secret
        (ReadinessProbe(path="/v1/$UNSET"), {}, HealthCheck(None, 15)),
        (ReadinessProbe(path="/a#b"), {}, HealthCheck(None, 15)),
    ],
)
def test_haproxy_check_from_the_probe(
    probe: ReadinessProbe, envs: dict[str, str], expected: HealthCheck
) -> None:
    assert haproxy_check(spec(probe, envs=envs)) == expected


def test_a_secret_never_reaches_the_check_path() -> None:
    s = spec(
        ReadinessProbe(path="/v1/${TOKEN}"),
        envs={"TOKEN": "sentinel"},
        secret_names=frozenset({"TOKEN"}),
    )
    assert haproxy_check(s) == HealthCheck(None, 15)
