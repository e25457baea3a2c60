"""The HAProxy load balancer: runtime membership, traffic through it, stats, restarts."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from reconciler.errors import SandboxError
from reconciler.sandbox import processes, replicas
from reconciler.sandbox.haproxy import HAProxyLB, HealthCheck, render_config
from tests.sandbox.conftest import requires_haproxy
from tests.traffic import Traffic


@pytest.fixture
def lb(state_dir: Path) -> Iterator[HAProxyLB]:
    balancer = HAProxyLB(state_dir, processes.free_port())
    assert balancer.up() is True
    try:
        yield balancer
    finally:
        balancer.down()


def _post(lb: HAProxyLB) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{lb.port}/v1/completions", json={"prompt": "hi"}, timeout=5
    )


def _launch(state_dir: Path, *ids: str, cold_start: float = 0.0) -> dict[str, tuple[str, int]]:
    out = {}
    for rid in ids:
        rec = replicas.launch(state_dir, rid, "local-1a", "on_demand", cold_start_s=cold_start)
        out[rid] = ("127.0.0.1", rec.port)
    return out


def test_config_has_the_frontend_backend_checks_and_admin_socket(tmp_path: Path) -> None:
    cfg = render_config(18080, tmp_path / "haproxy.sock")
    assert "bind 127.0.0.1:18080" in cfg
    assert "backend replicas" in cfg
    assert "option httpchk GET /health" in cfg
    assert f"stats socket {tmp_path / 'haproxy.sock'} mode 600 level admin" in cfg
    assert "timeout connect" in cfg and "timeout server" in cfg


def test_the_check_follows_the_readiness_probe(tmp_path: Path) -> None:
    cfg = render_config(18080, tmp_path / "s.sock", HealthCheck("/v1/models", 15))
    assert "option httpchk GET /v1/models" in cfg and "timeout check 15s" in cfg
    tcp = render_config(18080, tmp_path / "s.sock", HealthCheck(None, 5))
    assert "httpchk" not in tcp and "timeout check 5s" in tcp


@pytest.mark.parametrize("path", ["/a b", "/x#y", "/${SECRET}", '/q"', "/\\"])
def test_a_path_haproxy_cannot_hold_unquoted_is_refused(path: str) -> None:
    with pytest.raises(SandboxError, match="cannot go into HAProxy's config"):
        HealthCheck(path, 2)


def test_missing_haproxy_is_a_clear_error(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(SandboxError, match=r"HAProxy is not installed: run `apt-get install"):
        HAProxyLB(state_dir, 18080).up()


@requires_haproxy
def test_a_port_in_use_is_a_one_line_error_naming_the_port(state_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SandboxError, match=f"port {port} .*already in use") as err:
            HAProxyLB(state_dir, port).up()
    assert "\n" not in str(err.value)


@requires_haproxy
@pytest.mark.parametrize("length", [97, 98])
def test_the_admin_socket_path_is_checked_against_haproxys_own_limit(
    tmp_path: Path, length: int
) -> None:
    """HAProxy 2.6 takes a `stats socket` path of at most 97 bytes, not Linux's 107: a
    project under a path of 98 to 107 bytes started an HAProxy that failed with a config
    error, truncated in the apply's one line (found by issue 12's two-host test)."""
    state_dir = tmp_path / ("s" * (length - len(str(tmp_path)) - len("/haproxy.sock") - 1))
    state_dir.mkdir()
    balancer = HAProxyLB(state_dir, processes.free_port())
    assert len(str(balancer.socket_path)) == length
    if length > 97:
        with pytest.raises(SandboxError, match="too long for HAProxy's admin socket") as err:
            balancer.up()
        assert "\n" not in str(err.value)
        return
    try:
        balancer.up()
        assert balancer.is_running()
    finally:
        balancer.down()


@requires_haproxy
def test_set_members_makes_the_backend_hold_exactly_the_given_servers(
    state_dir: Path, lb: HAProxyLB
) -> None:
    servers = _launch(state_dir, "r1", "r2", "r3")
    assert lb.up() is False  # idempotent
    assert lb.members() == {}
    added, removed = lb.set_members({k: servers[k] for k in ("r1", "r2")})
    assert (added, removed) == (["r1", "r2"], [])
    assert lb.members() == {k: servers[k] for k in ("r1", "r2")}
    added, removed = lb.set_members({k: servers[k] for k in ("r2", "r3")})
    assert (added, removed) == (["r3"], ["r1"])
    assert lb.members() == {k: servers[k] for k in ("r2", "r3")}
    assert lb.set_members({k: servers[k] for k in ("r2", "r3")}) == ([], [])
    # A server whose address changed is replaced.
    moved = {"r2": servers["r2"], "r3": servers["r1"]}
    assert lb.set_members(moved) == (["r3"], ["r3"])
    assert lb.members() == moved
    assert lb.set_members({}) == ([], ["r2", "r3"])
    assert lb.members() == {}


@requires_haproxy
def test_requests_through_haproxy_reach_replicas_and_show_in_stats(
    state_dir: Path, lb: HAProxyLB
) -> None:
    servers = _launch(state_dir, "r1", "r2")
    lb.set_members(servers)
    assert lb.wait_until_up(["r1", "r2"])
    served = [_post(lb) for _ in range(10)]
    assert all(r.status_code == 200 for r in served)
    assert {r.headers["X-Replica-Id"] for r in served} == {"r1", "r2"}
    stats = lb.server_stats()
    assert stats["r1"].req_tot + stats["r2"].req_tot == 10
    assert stats["r1"].req_tot > 0 and stats["r2"].req_tot > 0
    assert lb.requests_total() == 10
    assert lb.request_rate() >= 0


@requires_haproxy
def test_its_log_holds_each_request_and_each_server_going_down(
    state_dir: Path, lb: HAProxyLB
) -> None:
    servers = _launch(state_dir, "r1")
    lb.set_members(servers)
    assert lb.wait_until_up(["r1"])
    assert _post(lb).status_code == 200
    replicas.stop(state_dir, "r1")
    deadline = time.monotonic() + 5
    while lb.server_stats()["r1"].up and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = lb.log_lines()
    assert any("replicas/r1" in ln and '"POST /v1/completions' in ln for ln in lines), lines
    assert any("Server replicas/r1 is DOWN" in ln for ln in lines), lines


@requires_haproxy
def test_a_replica_in_its_cold_start_gets_no_traffic(state_dir: Path, lb: HAProxyLB) -> None:
    warm = _launch(state_dir, "warm")
    cold = _launch(state_dir, "cold", cold_start=30)
    lb.set_members({**warm, **cold})
    assert lb.wait_until_up(["warm"])
    served = [_post(lb) for _ in range(6)]
    assert [r.status_code for r in served] == [200] * 6
    assert {r.headers["X-Replica-Id"] for r in served} == {"warm"}
    assert lb.server_stats()["cold"].status.startswith("DOWN")


@requires_haproxy
def test_restart_rebuilds_the_membership(state_dir: Path, lb: HAProxyLB) -> None:
    servers = _launch(state_dir, "r1", "r2")
    lb.set_members(servers)
    pid = lb.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while lb.is_running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not lb.is_running()
    with pytest.raises(SandboxError, match="not running"):
        lb.set_members(servers)
    assert lb.ensure_running() is True
    assert lb.members() == servers
    assert lb.ensure_running() is False
    assert lb.wait_until_up(["r1", "r2"])
    assert _post(lb).status_code == 200


@requires_haproxy
def test_down_stops_haproxy_and_forgets_members(state_dir: Path, lb: HAProxyLB) -> None:
    lb.set_members(_launch(state_dir, "r1"))
    pid = lb.pid()
    assert lb.down() is True
    assert pid is not None and not processes.is_alive(pid, [str(lb.cfg_path)])
    assert lb.down() is False
    assert lb.desired_members() == {}


def test_a_damaged_health_check_record_is_one_line() -> None:
    with pytest.raises(SandboxError, match="bad health check"):
        HealthCheck.from_json({"path": "/health", "timeout_s": "abc"})


@requires_haproxy
def test_replacing_the_whole_target_group_never_leaves_it_without_a_healthy_server(
    state_dir: Path, lb: HAProxyLB
) -> None:
    """Issue 9, item 6: the old servers were deleted before the new ones passed a check
    (about 0.5 s of 503). Now the new ones join first and the old ones drain."""
    old = _launch(state_dir, "old-0", "old-1")
    lb.set_members(old)
    assert lb.wait_until_up(list(old))
    new = _launch(state_dir, "new-0", "new-1")
    with Traffic(f"http://127.0.0.1:{lb.port}/v1/completions") as load:
        time.sleep(0.3)
        added, removed = lb.set_members(new)
        time.sleep(0.3)
    assert (added, removed) == (["new-0", "new-1"], ["old-0", "old-1"])
    assert load.sent > 20 and load.failed == []
    assert lb.members() == new


@requires_haproxy
def test_removing_a_server_lets_its_requests_in_flight_finish(
    state_dir: Path, lb: HAProxyLB
) -> None:
    """A leaving server drains: a request it is answering completes instead of being cut
    by `shutdown sessions`."""
    slow = {
        "slow": (
            "127.0.0.1",
            replicas.launch(state_dir, "slow", "local-1a", "on_demand", latency_ms=800).port,
        )
    }
    fast = _launch(state_dir, "fast")
    lb.set_members(slow)
    assert lb.wait_until_up(["slow"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_post, lb)
        time.sleep(0.3)  # the request is on `slow` now
        lb.set_members(fast)
        assert pending.result().status_code == 200


@requires_haproxy
def test_dead_servers_leave_at_once_without_waiting_for_the_new_ones(
    state_dir: Path, lb: HAProxyLB
) -> None:
    """Nothing to protect: a preempted server is removed without the join wait."""
    old = _launch(state_dir, "gone")
    lb.set_members(old)
    assert lb.wait_until_up(["gone"])
    replicas.stop(state_dir, "gone")
    deadline = time.monotonic() + 5
    while lb.server_stats()["gone"].up and time.monotonic() < deadline:
        time.sleep(0.05)
    new = _launch(state_dir, "next", cold_start=30.0)  # will not pass a check for 30 s
    start = time.monotonic()
    lb.set_members(new)
    assert time.monotonic() - start < 2.0
    assert set(lb.members()) == {"next"}


@pytest.mark.parametrize("check", [HealthCheck("/v1/models", 15), HealthCheck(None, 3)])
def test_the_port_and_check_are_read_back_from_the_configuration(
    tmp_path: Path, check: HealthCheck
) -> None:
    """What a lost `lb.json` is rebuilt from."""
    from reconciler.sandbox.haproxy import config_record

    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_config(18099, tmp_path / "s.sock", check))
    assert config_record(cfg) == {"port": 18099, "check": check.to_json(), "tls": False}
    cfg.write_text(render_config(18099, tmp_path / "s.sock", check, tmp_path / "e.pem"))
    assert config_record(cfg) == {"port": 18099, "check": check.to_json(), "tls": True}
    assert config_record(tmp_path / "missing.cfg") == {}


def test_server_stats_read_the_serving_columns_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`show stat` CSV as HAProxy writes it (`# ` before the header; columns in any order):
    each serving figure comes from its own column, the frontend and backend rows are not
    servers."""
    reply = (
        "# pxname,svname,status,req_tot,stot,scur,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,"
        "hrsp_5xx,hrsp_other,econ,eresp,rtime,ttime,req_rate,\n"
        "sandbox,FRONTEND,OPEN,90,90,0,0,80,0,0,10,0,,,,,0,\n"
        "replicas,r0,UP,60,58,1,1,50,2,3,4,0,5,6,21,25,0,\n"
        "replicas,r1,DOWN,30,30,0,0,30,0,0,0,0,0,0,0,0,0,\n"
        "replicas,BACKEND,UP,90,88,1,1,80,2,3,4,0,5,6,18,20,0,\n"
    )
    lb = HAProxyLB(tmp_path)
    monkeypatch.setattr(lb, "command", lambda cmd, timeout=5.0: reply)
    stats = lb.server_stats()
    assert set(stats) == {"r0", "r1"}
    r0 = stats["r0"]
    assert (r0.req_tot, r0.sessions_total, r0.sessions_current) == (60, 58, 1)
    assert (r0.hrsp_1xx, r0.hrsp_2xx, r0.hrsp_3xx, r0.hrsp_4xx, r0.hrsp_5xx) == (1, 50, 2, 3, 4)
    assert (r0.econ, r0.eresp, r0.rtime_ms, r0.ttime_ms) == (5, 6, 21, 25)
    assert not stats["r1"].up and stats["r1"].rtime_ms == 0


@requires_haproxy
def test_health_checks_leave_no_client_gone_lines_in_a_replica_log(
    state_dir: Path, lb: HAProxyLB
) -> None:
    """HAProxy checks each server every CHECK_INTER_S and resets the connection as soon as it
    has the status: a replica that wrote its body in a second segment found the
    connection gone and logged `closed the connection before the reply was written` every
    other second of an idle service. The whole reply now goes out in one write."""
    members = _launch(state_dir, "checked")
    lb.set_members(members)
    assert lb.wait_until_up(["checked"])
    time.sleep(4)  # 8 checks
    _, port = members["checked"]
    counts = requests.get(f"http://127.0.0.1:{port}/", timeout=5).json()["requests"]
    assert counts.get("health", 0) >= 6, counts
    assert counts.get("client_gone", 0) == 0, counts
    log = (replicas.replicas_dir(state_dir) / "checked.log").read_text()
    assert "closed the connection" not in log, log


@requires_haproxy
def test_a_connection_that_sends_nothing_is_not_logged_as_a_bad_request(lb: HAProxyLB) -> None:
    """The serving check first opens a TCP connection to see that the endpoint is reachable
    (serving._unreachable) and closes it: HAProxy logged that as `<NOSRV> ... 400 ...
    "<BADREQ>"` on every apply. `option dontlognull` leaves out connections that carried no
    data; a request still shows."""
    with socket.create_connection(("127.0.0.1", lb.port), timeout=2):
        pass
    assert _post(lb).status_code == 503  # no server: a real request, logged
    time.sleep(0.3)
    log = "\n".join(lb.log_lines())
    assert "<BADREQ>" not in log, log
    assert '"POST /v1/completions HTTP/1.1"' in log, log
