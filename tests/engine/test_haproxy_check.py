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


def test_the_check_follows_the_versions_in_the_load_balancer() -> None:
    """A rollout that changes the probe path must not check the old replicas with the new
    path (a typo there took every healthy replica out of HAProxy, a total outage)."""
    from reconciler.backends.base import Layout
    from reconciler.backends.sandbox import lb_check
    from reconciler.policy import Market
    from reconciler.spec.fingerprint import replica_part
    from reconciler.stacks import ManagedReplica

    old = spec(ReadinessProbe(path="/health", timeout_seconds=5))
    new = spec(ReadinessProbe(path="/healthz", timeout_seconds=5))
    parts = {1: replica_part(old), 2: replica_part(new)}

    def kept(*versions: int) -> tuple[ManagedReplica, ...]:
        return tuple(
            ManagedReplica(f"r{i}", "local-1a", Market.SPOT, version=v)
            for i, v in enumerate(versions)
        )

    # Only old replicas (a rollback finished, the file still says /healthz): their path.
    assert lb_check(new, Layout(kept(1, 1), (), versions=parts)) == HealthCheck("/health", 5)
    # Both during the rollout: a TCP check, the reconciler's probes gate membership.
    assert lb_check(new, Layout(kept(1, 2), (), versions=parts)) == HealthCheck(None, 5)
    # Only new ones, or nothing recorded: the file's probe.
    assert lb_check(new, Layout(kept(2, 2), (), versions=parts)) == HealthCheck("/healthz", 5)
    assert lb_check(new, Layout(kept(1), ())) == HealthCheck("/healthz", 5)
