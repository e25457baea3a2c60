"""Lost records never cost a healthy server (issue "Hardening", item 6): a stack whose
Terraform state file is gone, and a load balancer killed together with its record, are rebuilt
from what runs, while requests keep being answered."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.paths import ServicePaths
from reconciler.sandbox import replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.processes import is_alive
from tests.e2e.conftest import applied, fast_sandbox_env
from tests.traffic import Traffic

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def env() -> dict[str, str]:
    return fast_sandbox_env()


@pytest.fixture
def paths(tmp_path: Path, env: dict[str, str]) -> Iterator[ServicePaths]:
    with applied(tmp_path, "keep", env) as paths:
        yield paths


def _running(paths: ServicePaths) -> dict[str, int]:
    return {
        s.record.replica_id: s.record.pid
        for s in replicas.list_replicas(paths.sandbox_dir)
        if s.alive
    }


def _drop_zone_then_apply(
    paths: ServicePaths,
    env: dict[str, str],
    region: str,
    zone: str,
    before: dict[str, int] | None = None,
) -> dict[str, int]:
    """Remove `zone` from the spec, plan (which must succeed and, given `before`, stop
    nothing), then apply under traffic (every request answered); the replicas running after."""
    spec = paths.spec_file
    line = f"    - {{cloud: local, region: {region}, zone: {zone}}}\n"
    spec.write_text(spec.read_text().replace(line, ""))
    plan = CliRunner().invoke(main, ["plan", "keep", "--root", str(paths.root)], env=env)
    assert plan.exit_code == 0, plan.output
    if before is not None:
        assert _running(paths) == before, "plan stopped nothing"
    url = f"http://127.0.0.1:{env['HEDGEFORM_LB_PORT']}/v1/completions"
    with Traffic(url, pause_s=0.01) as traffic:
        result = CliRunner().invoke(main, ["apply", "keep", "--root", str(paths.root)], env=env)
    assert result.exit_code == 0, result.output
    assert traffic.sent > 20 and traffic.failed == []
    return _running(paths)


def test_a_lost_state_file_stops_no_serving_replica(
    paths: ServicePaths, env: dict[str, str]
) -> None:
    """Before: the replicas of a stack whose state was deleted were stopped as orphans at the
    start of the next apply, before replacements were ready (7.7 s of 502/503)."""
    before = _running(paths)
    assert len(before) == 3
    for stack in ("local-1", "local-2"):
        (paths.stack_dir(stack) / "terraform.tfstate").unlink(missing_ok=True)
        (paths.stack_dir(stack) / "terraform.tfstate.backup").unlink(missing_ok=True)
    url = f"http://127.0.0.1:{env['HEDGEFORM_LB_PORT']}/v1/completions"
    with Traffic(url, pause_s=0.01) as traffic:
        result = CliRunner().invoke(main, ["apply", "keep", "--root", str(paths.root)], env=env)
    assert result.exit_code == 0, result.output
    assert traffic.sent > 20 and traffic.failed == []
    assert _running(paths) == before, "the same processes serve; none was stopped"
    assert "taken back into their stacks" in result.output
    again = CliRunner().invoke(main, ["plan", "keep", "--root", str(paths.root)], env=env)
    assert again.exit_code == 0 and "no changes" in again.output, again.output


def test_a_killed_load_balancer_with_its_record_lost_is_started_again_by_apply(
    paths: ServicePaths, env: dict[str, str]
) -> None:
    """Before: every apply failed with "no load balancer recorded here" until a manual
    `hedgeform sandbox lb up`."""
    lb = HAProxyLB(paths.sandbox_dir)
    pid = lb.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    lb.lb_path.unlink()
    result = CliRunner().invoke(main, ["apply", "keep", "--root", str(paths.root)], env=env)
    assert result.exit_code == 0, result.output
    assert not is_alive(pid, [str(lb.cfg_path)])
    answer = requests.get(f"http://127.0.0.1:{env['HEDGEFORM_LB_PORT']}/health", timeout=5)
    assert answer.status_code == 200
    assert set(HAProxyLB(paths.sandbox_dir).members()) == set(_running(paths))


def test_a_running_load_balancer_whose_record_is_lost_is_recognised(
    paths: ServicePaths, env: dict[str, str]
) -> None:
    """Found by the user-eye check: with `lb.json` gone while HAProxy ran, `status` said
    "(not running)", and once the front stack had to be applied again every apply failed
    with "load balancer already runs with another health check"."""
    lb = HAProxyLB(paths.sandbox_dir)
    pid = lb.pid()
    lb.lb_path.unlink()
    status = CliRunner().invoke(main, ["status", "keep", "--root", str(paths.root)], env=env)
    assert status.exit_code == 0, status.output
    port = env["HEDGEFORM_LB_PORT"]
    assert f"http://127.0.0.1:{port}" in status.output and "not running" not in status.output
    (paths.stack_dir("front") / "terraform.tfstate").unlink()
    url = f"http://127.0.0.1:{port}/v1/completions"
    with Traffic(url, pause_s=0.01) as traffic:
        result = CliRunner().invoke(main, ["apply", "keep", "--root", str(paths.root)], env=env)
    assert result.exit_code == 0, result.output
    assert traffic.sent > 20 and traffic.failed == []
    assert HAProxyLB(paths.sandbox_dir).pid() == pid, "the same HAProxy serves"


def test_a_region_removed_from_the_spec_is_drained_not_killed(
    paths: ServicePaths, env: dict[str, str]
) -> None:
    """Found by the second user-eye check: with local-2a removed from the spec, `plan`
    (documented as changing nothing) stopped its replica, and `apply` killed it while it was
    still in the target group (failed requests). Now plan stops nothing; apply starts the
    replacement in a named zone, serves from the old replica until then, and only then lets
    Terraform destroy the retired region's stack."""
    before = _running(paths)
    retired = [rid for rid in before if rid.startswith("local-2a")]
    assert retired
    after = _drop_zone_then_apply(paths, env, "local-2", "local-2a", before=before)
    assert len(after) == 3 and not [rid for rid in after if rid.startswith("local-2a")]
    assert set(HAProxyLB(paths.sandbox_dir).members()) == set(after)
    from reconciler.backends.sandbox import managed_replicas

    assert managed_replicas(paths.stack_dir("local-2")) == []


def test_a_member_left_on_an_old_port_is_set_again(
    paths: ServicePaths, env: dict[str, str]
) -> None:
    """Found by the third user-eye check: a replica replaced under the same id (a new port)
    stayed in HAProxy on its old port for ever (the member names had not changed, so
    nothing noticed), and the endpoint answered 503 while status said READY."""
    rid = sorted(_running(paths))[0]
    old = replicas.get(paths.sandbox_dir, rid)
    assert old is not None
    replicas.stop(paths.sandbox_dir, rid)
    new = replicas.launch(paths.sandbox_dir, rid, old.zone, old.market, cold_start_s=0.0)
    assert new.port != old.port
    assert HAProxyLB(paths.sandbox_dir).members()[rid][1] == old.port  # stale now
    result = CliRunner().invoke(main, ["apply", "keep", "--root", str(paths.root)], env=env)
    assert result.exit_code == 0, result.output
    assert HAProxyLB(paths.sandbox_dir).members()[rid] == ("127.0.0.1", new.port)


def test_a_zone_removed_from_a_region_still_in_the_spec_is_drained(
    paths: ServicePaths, env: dict[str, str]
) -> None:
    """Found by the third user-eye check: removing local-1b (its region local-1 still named
    through local-1a) crashed plan and apply with a KeyError traceback."""
    assert [rid for rid in _running(paths) if rid.startswith("local-1b")]
    after = _drop_zone_then_apply(paths, env, "local-1", "local-1b")
    assert len(after) == 3 and not [rid for rid in after if rid.startswith("local-1b")]
