"""Replica health under load on the sandbox: a hung replica, a killed one, one slow to answer
its probe, and a service whose probe is a POST with an Authorization header, each while
`hedgeform run` reconciles and a bounded loop of requests goes through HAProxy on loopback.

Each scenario prints one JSON line of figures (failed requests, time to recover); the figures
in docs/operations.md come from `pytest -s tests/e2e/test_health_under_load.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.loadgen import LoadResult, run_load
from tests.e2e.conftest import REPO, SANDBOX_ZONES, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HEDGEFORM = str(Path(sys.executable).parent / "hedgeform")

SPECS = {
    # GET /health, 1 s probe timeout, replaced after 5 s of failed probes.
    "health": """\
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 20
    timeout_seconds: 1
    consecutive_failure_threshold_timeout: 5
  replicas: 3
""",
    # The probe path answers in 2.5 s on one replica: within timeout_seconds 15, so it serves.
    "slow": """\
service:
  readiness_probe:
    path: /v1/models
    initial_delay_seconds: 20
    timeout_seconds: 15
    consecutive_failure_threshold_timeout: 5
  replicas: 2
""",
    # vLLM-style API key: the probe is a POST with an Authorization header from a secret.
    "auth": """\
service:
  readiness_probe:
    path: /v1/completions
    post_data: {prompt: ping, max_tokens: 1}
    headers:
      Authorization: Bearer ${VLLM_API_KEY}
    initial_delay_seconds: 20
    timeout_seconds: 5
  replicas: 2
secrets:
  VLLM_API_KEY: null
""",
}
API_KEY = "sentinel-key-5f1c"


@dataclass
class Watch:
    """Polls HAProxy's members every 0.1 s: when each fault's replica left and when the
    target group was whole again without it."""

    lb: HAProxyLB
    stop: threading.Event = field(default_factory=threading.Event)
    samples: list[tuple[float, frozenset[str]]] = field(default_factory=list)

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                self.samples.append((time.monotonic(), frozenset(self.lb.members())))
            except Exception:  # a restarting HAProxy: no sample
                continue

    def recovered_at(self, since: float, gone: str, size: int) -> float | None:
        for t, members in self.samples:
            if t >= since and gone not in members and len(members) >= size:
                return t
        return None


@dataclass
class Scenario:
    root: Path
    service: str
    env: dict[str, str]

    @property
    def sandbox(self) -> Path:
        return self.root / "state" / self.service / "sandbox"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['HEDGEFORM_LB_PORT']}"

    def hedgeform(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HEDGEFORM, *args, "--root", str(self.root)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def alive(self) -> dict[str, int]:
        return {s.record.replica_id: s.record.pid for s in replicas.list_replicas(self.sandbox)}


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[[str], Scenario]]:
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (make setup installs it when run as root)")
    if not (REPO / ".tools" / "bin" / "terraform").exists():
        pytest.skip("the pinned Terraform is not installed: run make setup")
    (tmp_path / "services").mkdir()
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    (tmp_path / ".tools").symlink_to(REPO / ".tools")
    made: list[Scenario] = []

    def make_scenario(service: str) -> Scenario:
        (tmp_path / "services" / f"{service}.yaml").write_text(SPECS[service] + SANDBOX_ZONES)
        env = {
            **os.environ,
            "HEDGEFORM_LB_PORT": str(free_port()),
            "HEDGEFORM_SANDBOX_COLD_START": "1",
            "HEDGEFORM_SANDBOX_LATENCY_MS": "5",
        }
        env.pop("HEDGEFORM_CRASH_AT", None)
        env.pop("VLLM_API_KEY", None)
        if service == "auth":  # the replicas want this key, as `vllm serve --api-key` would
            env["VLLM_API_KEY"] = API_KEY
        scenario = Scenario(tmp_path, service, env)
        made.append(scenario)
        return scenario

    yield make_scenario
    for s in made:
        for pid in s.alive().values():  # a stopped replica must be able to die
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)
        s.hedgeform("destroy", s.service)
        if s.sandbox.exists():
            replicas.stop_all(s.sandbox)
            HAProxyLB(s.sandbox).down()
            market_daemon.stop(s.sandbox)


def under_load(
    s: Scenario,
    seconds: float,
    faults: list[tuple[float, Callable[[], str]]],
    headers: dict[str, str] | None = None,
) -> tuple[LoadResult, Watch, list[tuple[str, float]]]:
    """Apply, then run `hedgeform run --interval 2` and `seconds` of load at 20 req/s; each
    fault runs at its offset and returns the id of the replica it broke."""
    applied = s.hedgeform("apply", s.service)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "serving after" in applied.stdout
    loop = subprocess.Popen(
        [HEDGEFORM, "run", s.service, "--root", str(s.root), "--interval", "2"],
        env=s.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watch = Watch(HAProxyLB(s.sandbox))
    watcher = threading.Thread(target=watch.run, daemon=True)
    watcher.start()
    result: list[LoadResult] = []
    load = threading.Thread(
        target=lambda: result.append(
            run_load(s.url, 20, seconds, timeout_s=10, max_tokens=4, headers=headers)
        )
    )
    started = time.monotonic()
    load.start()
    broken: list[tuple[str, float]] = []
    try:
        for offset, fault in faults:
            time.sleep(max(0.0, started + offset - time.monotonic()))
            broken.append((fault(), time.monotonic()))
        load.join(seconds + 30)
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(60)
        watch.stop.set()
        watcher.join(5)
    return result[0], watch, broken


def report(name: str, load: LoadResult, recovery: dict[str, float | None]) -> None:
    figures: dict[str, Any] = {
        "scenario": name,
        "sent": load.sent,
        "failed": load.failures,
        "errors": load.errors,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
        "recovered_s": {k: None if v is None else round(v, 1) for k, v in recovery.items()},
    }
    print(json.dumps(figures))


def test_a_hung_and_a_killed_replica_are_replaced_under_load(
    make: Callable[[str], Scenario],
) -> None:
    s = make("health")

    def hang() -> str:
        rid, pid = sorted(s.alive().items())[0]
        os.kill(pid, signal.SIGSTOP)
        return rid

    def kill() -> str:
        rid, pid = sorted(s.alive().items())[-1]
        os.kill(pid, signal.SIGKILL)
        return rid

    load, watch, broken = under_load(s, 45, [(5, hang), (25, kill)])
    recovery = {}
    for (rid, at), what in zip(broken, ("hung", "killed"), strict=True):
        done = watch.recovered_at(at, rid, 3)
        recovery[what] = None if done is None else done - at
        assert rid not in s.alive(), f"the {what} replica {rid} was not replaced"
    report("hung + killed", load, recovery)
    assert all(v is not None for v in recovery.values()), recovery
    assert len(s.alive()) == 3
    tail = load.per_second[-8:]  # after both recovered: everything served
    assert sum(fail for _, fail in tail) == 0, load.per_second


def test_a_replica_slow_on_its_probe_path_keeps_serving(make: Callable[[str], Scenario]) -> None:
    """2.5 s to answer /v1/models and /health with timeout_seconds 15: ready, never replaced,
    in the LB and UP in HAProxy (the old 1 s cap made it NOT_READY; HAProxy's fixed 2 s
    check of /health marked it DOWN)."""
    s = make("slow")

    def slow() -> str:
        rid = sorted(s.alive())[0]
        fault = subprocess.run(
            [HEDGEFORM, "sandbox", "replica", "fault", "--state-dir", str(s.sandbox),
             "--id", rid, "--delay-ms", "2500", "--path", "/v1/models", "--path", "/health"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert fault.returncode == 0, fault.stderr
        return rid

    before: set[str] = set()

    def note_and_slow() -> str:
        before.update(s.alive())
        return slow()

    load, watch, broken = under_load(s, 25, [(1, note_and_slow)])
    (rid, at) = broken[0]
    report("slow probe", load, {})
    assert set(s.alive()) == before, "the slow replica was replaced"
    late = [members for t, members in watch.samples if t >= at + 10]
    assert late and all(rid in members for members in late), "the slow replica left the LB"
    assert load.failures == 0, load.errors
    # HAProxy's own check follows the probe (GET /v1/models within 15 s): still UP. It used
    # to GET /health with a 2 s timeout and mark a slow replica DOWN the probe called READY.
    assert HAProxyLB(s.sandbox).server_stats()[rid].status.startswith("UP")


def test_a_post_probe_with_an_authorization_header(make: Callable[[str], Scenario]) -> None:
    s = make("auth")
    auth = {"Authorization": f"Bearer {API_KEY}"}
    load, _, _ = under_load(s, 15, [], headers=auth)
    report("POST probe + Authorization", load, {})
    assert load.failures == 0, load.errors
    assert requests.post(f"{s.url}/v1/completions", json={}, timeout=5).status_code == 401
    leaks = [
        p
        for p in (s.root / "state").rglob("*")
        if p.is_file() and API_KEY.encode() in p.read_bytes()
    ]
    assert leaks == [], leaks  # the key is in the probe's header, never on disk
