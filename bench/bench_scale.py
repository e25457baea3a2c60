"""Scale figures: what a reconcile pass costs as services and replicas grow (docs/scale.md).

Cells are services x replicas. Every service is an on-demand service of `replicas` replicas
over the sandbox's three zones (two region stacks and the front stack), so once it serves,
every pass is a no-op and the figures are the steady state a `hedgeform run` loop pays each
tick. Two kinds of cell:

- real (`--real`, default 1x3,10x3,1x30): the sandbox backend, real Terraform, real replica
  processes and HAProxy. A pass is timed phase by phase (observe, decide, render, plan) with
  the plan cache (a stack whose inputs, state and module match the last no-change plan is
  not planned) and without it (the cache's marker file deleted before each pass, so every
  stack is planned by Terraform, as a cloud stack always is).
- fake (`--fake-services` x `--replicas`, default 1,10,100 x 3,30): the in-memory backend
  (reconciler/backends/fake.py) with each region stack's replicas read back from a Terraform
  state file, and the fake Terraform runner (reconciler/terraform/fake.py; here a subclass
  whose apply writes that state). No process, no probe, no Terraform: the reconciler's own
  per-service cost (record, state read, decision, Jinja render, the cache check, the record
  write).

Besides the cells: the pure policy call timed alone (`--decide-calls` calls per batch), the
/proc scans every pass makes timed with extra idle processes on the host, and one real
`hedgeform run` process per replica count: its memory, its CPU while idle between ticks and
per no-op tick, and the CPU of the passes that replace one killed replica (a changing tick).

Runs in a throwaway project root (the repository's terraform/ and .tools/ linked in), so it
never touches your state/; everything it starts is stopped on exit, Ctrl-C included. Needs
`make setup` and HAProxy. Run: `.venv/bin/python bench/bench_scale.py` (about 4 minutes on
two cores; `--quick` for a smaller run, `--json FILE` to keep the figures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from reconciler.backends.base import Look, Observed, Since
from reconciler.backends.fake import FakeBackend
from reconciler.backends.sandbox import (
    ENV_SETTINGS,
    SandboxSettings,
    managed_replicas,
    zone_offers,
)
from reconciler.engine.reconcile import NOOP_MARKER, Reconciler
from reconciler.files import write_atomic
from reconciler.paths import ServicePaths
from reconciler.policy import (
    DEFAULT_POLICY,
    LaunchResult,
    Memory,
    Observation,
    Replica,
    ReplicaState,
    Signals,
    decide,
)
from reconciler.sandbox import market_daemon, processes, replicas
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.spec import ServiceSpec, load_spec
from reconciler.stacks import FRONT, ManagedReplica
from reconciler.terraform.fake import FakeTerraformRunner
from reconciler.terraform.runner import PlanResult
from reconciler.terraform.state import (
    STATE_FILE,
    stray_terraform_processes,
    terraform_processes,
)

REPO = Path(__file__).resolve().parents[1]
HEDGEFORM = Path(sys.executable).parent / "hedgeform"
ZONES = """\
resources:
  any_of:
    - {cloud: local, region: local-1, zone: local-1a}
    - {cloud: local, region: local-1, zone: local-1b}
    - {cloud: local, region: local-2, zone: local-2a}
"""
ON_DEMAND = "service:\n  readiness_probe: /health\n  replicas: {n}\n" + ZONES
SPOTHEDGE = (  # for the decision figure only: SpotHedge's placer at work (llama.yaml's policy)
    "service:\n  readiness_probe: /health\n  replica_policy:\n    min_replicas: {n}\n"
    "    max_replicas: {n}\n    num_overprovision: 1\n    dynamic_ondemand_fallback: true\n"
    "    spot_placer: dynamic_fallback\n" + ZONES + "  use_spot: true\n"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
FAKE_PASSES = 30  # at least this many timed passes in a fake cell, whatever --runs says


class BenchError(Exception):
    pass


# -- measuring ---------------------------------------------------------------------------


def cpu_split() -> tuple[float, float]:
    """CPU seconds so far: this process (all threads), and its reaped children with their
    descendants (the Terraform commands and their provider plugins)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def proc_entries() -> int:
    return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())


def proc_cpu_s(pid: int) -> float:
    """utime + stime of `pid` (every thread, dead ones included) and of its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def proc_sched_s(pid: int) -> float:
    """Time on CPU of the live threads of `pid`, in nanosecond resolution (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def proc_kb(pid: int, key: str, name: str = "status") -> int:
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class PassSample:
    """One pass of one service: wall seconds per phase, CPU seconds (Python, Terraform)."""

    observe: float
    decide: float
    render: float
    plan: float
    total: float
    cpu_py: float
    cpu_tf: float
    planned: int  # stacks Terraform (or the fake runner) planned
    parts: dict[str, float] = field(default_factory=dict)  # the backend's observe, its parts


class PhaseTimer:
    """Times a Reconciler's steps by wrapping them on the instance (no class is touched):
    decide, render and plan, the backend's `observe` and, on the sandbox, the parts of it
    (the market's `ensure_up`, the replica probes in `states`, the orphan scan); keeps the
    last decision's inputs for `time_decide`."""

    STEPS = ("_decide", "_render", "_plan_all")
    CLOUD_STEPS = ("observe", "ensure_up", "states", "orphans")

    def __init__(self, rec: Reconciler) -> None:
        self.last: dict[str, float] = {}
        self.seen: Any = None
        for name in self.STEPS:
            setattr(rec, name, self._wrap(name, getattr(rec, name)))
        for name in self.CLOUD_STEPS:  # FakeBackend's `states` is data, not a step
            if callable(getattr(rec.cloud, name, None)):
                setattr(rec.cloud, name, self._wrap(name, getattr(rec.cloud, name)))

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if name == "_decide":
                self.seen = args[0]
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.last[name] = self.last.get(name, 0.0) + time.perf_counter() - started

        return timed


@dataclass
class Service:
    name: str
    rec: Reconciler
    timer: PhaseTimer
    runners: dict[str, FakeTerraformRunner] = field(default_factory=dict)

    @property
    def paths(self) -> ServicePaths:
        return self.rec.paths

    def planned(self) -> int:
        return sum(1 for r in self.runners.values() for c in r.commands() if c == "plan")


def one_pass(svc: Service, *, uncached: bool, expect_noop: bool = True) -> PassSample:
    """One `run_pass(apply=True)`, timed. `uncached`: the plan cache's markers deleted first,
    so every stack is planned."""
    if uncached:
        for stack in svc.rec.stack_names:
            (svc.paths.stack_dir(stack) / NOOP_MARKER).unlink(missing_ok=True)
    svc.timer.last.clear()
    fake_plans = svc.planned()
    py0, tf0 = cpu_split()
    result = svc.rec.run_pass(apply=True)
    py1, tf1 = cpu_split()
    if result.failed:
        raise BenchError(f"{svc.name}: {'; '.join(str(o.error) for o in result.failed)}")
    if expect_noop and result.changed:
        raise BenchError(f"{svc.name}: expected a no-op pass, got: {result.summary_line}")
    planned = sum(1 for o in result.outcomes if o.plan_path is not None)
    if svc.runners:
        planned = svc.planned() - fake_plans
    last = svc.timer.last
    return PassSample(
        observe=result.durations["observe_s"],
        decide=last.get("_decide", 0.0),
        render=last.get("_render", 0.0),
        plan=last.get("_plan_all", 0.0),
        total=result.durations["total_s"],
        cpu_py=py1 - py0,
        cpu_tf=tf1 - tf0,
        planned=planned,
        parts={k: last[k] for k in PhaseTimer.CLOUD_STEPS if k in last},
    )


def time_decide(
    spec: ServiceSpec,
    observed: Observation,
    signals: Signals,
    memory: Memory,
    now: float,
    calls: int,
    batches: int = 5,
) -> float:
    """Seconds per call of the pure policy (`decide`), median over `batches` batches."""
    per_call = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(calls):
            decide(spec, observed, signals, memory, now, DEFAULT_POLICY)
        per_call.append((time.perf_counter() - started) / calls)
    return med(per_call)


def decide_seen(svc: Service, calls: int) -> float:
    seen = svc.timer.seen
    if seen is None:
        raise BenchError(f"{svc.name}: no pass ran")
    memory = seen.record.memory
    return time_decide(svc.rec.spec, seen.observed, seen.signals, memory, seen.now, calls)


def spothedge_steady(spec: ServiceSpec) -> tuple[Observation, Signals, Memory, float]:
    """SpotHedge's steady state for `spec`, reached by the policy alone: each tick's launches
    come up READY at the next tick, until a tick neither launches nor terminates."""
    now, memory = 1_000_000.0, Memory()
    alive: list[Replica] = []
    signals = Signals()
    for _ in range(50):
        observed = Observation(tuple(alive), zone_offers(spec))
        d = decide(spec, observed, signals, memory, now, DEFAULT_POLICY)
        if not d.launches and not d.terminations:
            return observed, signals, memory, now
        memory = d.memory
        ended = {t.replica_id for t in d.terminations}
        alive = [r for r in alive if r.id not in ended]
        alive += [
            Replica(x.replica_id, x.zone, x.market, ReplicaState.READY, now) for x in d.launches
        ]
        signals = Signals(
            launch_results=tuple(LaunchResult(x.zone, x.market, True) for x in d.launches)
        )
        now += 30.0
    raise BenchError(f"{spec.name}: SpotHedge did not settle in 50 ticks")


# -- project roots, services, cleanup ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def project_root(parent: Path, name: str) -> Path:
    root = parent / name
    (root / "services").mkdir(parents=True)
    (root / "terraform").symlink_to(REPO / "terraform")
    (root / ".tools").symlink_to(REPO / ".tools")
    return root


def write_spec(root: Path, name: str, template: str, replicas_n: int) -> ServiceSpec:
    path = root / "services" / f"{name}.yaml"
    path.write_text(template.replace("{n}", str(replicas_n)))
    return load_spec(path)


class Cleanup:
    """Everything the bench started, stopped on exit (Ctrl-C and SIGTERM included)."""

    def __init__(self) -> None:
        self.services: list[Service] = []
        self.sandboxes: list[Path] = []
        self.ever: list[Path] = []  # every sandbox started, for the final check
        self.children: list[subprocess.Popen[bytes]] = []

    def cancel_terraform(self) -> None:
        for svc in self.services:
            with contextlib.suppress(Exception):
                svc.rec.cancel()

    def stop_child(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_sandbox(self, sandbox: Path) -> None:
        """The sandbox of one service: its replicas, HAProxy, market daemon, then anything
        else still carrying its HEDGEFORM_SANDBOX marker."""
        for step in (replicas.stop_all, lambda d: HAProxyLB(d).down(), market_daemon.stop):
            with contextlib.suppress(Exception):
                step(sandbox)
        for proc in processes.owned_by(sandbox):
            processes.terminate(proc.pid, proc.argv)

    def stop_sandboxes(self, sandboxes: Sequence[Path]) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(self.stop_sandbox, sandboxes))
        self.sandboxes = [s for s in self.sandboxes if s not in sandboxes]

    def all(self) -> None:
        self.cancel_terraform()
        for proc in self.children:
            self.stop_child(proc)
        self.stop_sandboxes(list(self.sandboxes))


@contextlib.contextmanager
def interruptible(cleanup: Cleanup) -> Iterator[None]:
    """SIGINT/SIGTERM: cancel Terraform at once, then unwind (the finally blocks stop the
    rest); during the final cleanup both are ignored so it runs to its end."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        cleanup.cancel_terraform()
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        try:
            cleanup.all()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)


# -- the real cells ----------------------------------------------------------------------


def sandbox_env(settings: SandboxSettings) -> dict[str, str]:
    """The environment under which `hedgeform run` builds the same SandboxSettings."""
    env = dict(os.environ)
    for name, (variable, _, _) in ENV_SETTINGS.items():
        value = getattr(settings, name)
        env[variable] = str(int(value)) if name == "lb_port" else repr(float(value))
    return env


def real_service(root: Path, name: str, n: int, cold_start: float, cleanup: Cleanup) -> Service:
    spec = write_spec(root, name, ON_DEMAND, n)
    paths = ServicePaths.for_service(name, root=root)
    settings = SandboxSettings(cold_start_s=cold_start, lb_port=free_port(), latency_ms=1)
    rec = Reconciler(paths, spec, settings)
    svc = Service(name, rec, PhaseTimer(rec))
    cleanup.services.append(svc)
    cleanup.sandboxes.append(paths.sandbox_dir)
    cleanup.ever.append(paths.sandbox_dir)
    return svc


def launch(svc: Service) -> float:
    started = time.perf_counter()
    done = svc.rec.converge(180.0)
    failed = "; ".join(str(o.error) for o in done.last.failed)
    if failed or done.serving is None or not done.serving.serving:
        raise BenchError(f"{svc.name} did not come up: {failed or done.serving}")
    for _ in range(3):  # the pass after serving may still refresh the front's members
        if not svc.rec.run_pass(apply=True).changed:
            return time.perf_counter() - started
    raise BenchError(f"{svc.name}: passes keep changing after it serves")


@dataclass
class CellResult:
    kind: str  # "sandbox" or "fake"
    services: int
    replicas: int
    cached: list[PassSample]
    uncached: list[PassSample]
    decide_s: float
    cached_rounds: list[tuple[float, float]]  # per round over all services: (wall, CPU)
    uncached_rounds: list[tuple[float, float]]
    proc_entries: int

    def row(self, samples: list[PassSample], attr: str) -> float:
        return med([getattr(s, attr) for s in samples])

    def cpu(self, samples: list[PassSample]) -> float:
        return med([s.cpu_py + s.cpu_tf for s in samples])

    def summary(self) -> dict[str, Any]:
        c, u = self.cached, self.uncached
        return {
            "kind": self.kind,
            "services": self.services,
            "replicas": self.replicas,
            "observe_ms": 1e3 * self.row(c, "observe"),
            "observe_parts_ms": {
                k: 1e3 * med([x.parts.get(k, 0.0) for x in c]) for k in PhaseTimer.CLOUD_STEPS
            },
            "decide_us": 1e6 * self.decide_s,
            "decide_in_pass_ms": 1e3 * self.row(c, "decide"),
            "render_ms": 1e3 * self.row(c, "render"),
            "plan_cached_ms": 1e3 * self.row(c, "plan"),
            "plan_uncached_ms": 1e3 * self.row(u, "plan"),
            "pass_cached_ms": 1e3 * self.row(c, "total"),
            "pass_uncached_ms": 1e3 * self.row(u, "total"),
            "cpu_cached_ms": 1e3 * self.cpu(c),
            "cpu_uncached_ms": 1e3 * self.cpu(u),
            "cpu_uncached_terraform_ms": 1e3 * self.row(u, "cpu_tf"),
            "stacks_planned_cached": max((s.planned for s in c), default=0),
            "stacks_planned_uncached": min((s.planned for s in u), default=0),
            "round_cached_wall_ms": 1e3 * med([r[0] for r in self.cached_rounds]),
            "round_cached_cpu_ms": 1e3 * med([r[1] for r in self.cached_rounds]),
            "round_uncached_wall_ms": 1e3 * med([r[0] for r in self.uncached_rounds]),
            "round_uncached_cpu_ms": 1e3 * med([r[1] for r in self.uncached_rounds]),
            "proc_entries": self.proc_entries,
            "passes_cached": len(c),
            "passes_uncached": len(u),
        }


def measure_cell(
    kind: str, services: Sequence[Service], n: int, runs: int, uncached_runs: int, calls: int
) -> CellResult:
    """`runs` rounds of cached no-op passes over every service, then `uncached_runs` rounds
    with the plan cache's markers deleted. A round passes each service once, in turn, as N
    loops whose ticks do not coincide would."""
    out = CellResult(kind, len(services), n, [], [], 0.0, [], [], proc_entries())
    for uncached, rounds, samples, totals in (
        (False, runs, out.cached, out.cached_rounds),
        (True, uncached_runs, out.uncached, out.uncached_rounds),
    ):
        for _ in range(rounds):
            got = [one_pass(svc, uncached=uncached) for svc in services]
            samples += got
            totals.append((sum(s.total for s in got), sum(s.cpu_py + s.cpu_tf for s in got)))
    out.decide_s = decide_seen(services[0], calls)
    return out


def print_cell(cell: CellResult) -> None:
    s = cell.summary()
    what = "sandbox, real Terraform" if cell.kind == "sandbox" else "fake backend and Terraform"
    print(
        f"\n{cell.services} service(s) x {cell.replicas} replicas ({what}; "
        f"{s['proc_entries']} processes on the host)"
    )
    print(
        f"  per service, medians of {s['passes_cached']} cached / {s['passes_uncached']} "
        f"uncached passes (ms): observe {s['observe_ms']:.2f}  decide {s['decide_us']:.0f} us "
        f"pure ({s['decide_in_pass_ms']:.2f} ms in the pass)  render {s['render_ms']:.2f}  "
        f"plan cached {s['plan_cached_ms']:.2f} / uncached {s['plan_uncached_ms']:.1f}"
    )
    planner = "Terraform" if cell.kind == "sandbox" else "the fake runner"
    print(
        f"  whole pass: cached {s['pass_cached_ms']:.1f} ms wall, {s['cpu_cached_ms']:.1f} ms "
        f"CPU ({s['stacks_planned_cached']} stacks planned); uncached "
        f"{s['pass_uncached_ms']:.1f} ms wall, {s['cpu_uncached_ms']:.1f} ms CPU "
        f"({s['cpu_uncached_terraform_ms']:.1f} in child processes; "
        f"{s['stacks_planned_uncached']} stacks planned by {planner})"
    )
    parts = s["observe_parts_ms"]
    line = f"  observe: {parts['observe']:.2f} in the backend's observe"
    if parts["ensure_up"] or parts["states"]:
        line += (
            f" (sandbox market {parts['ensure_up']:.2f}, replica probes {parts['states']:.2f},"
            f" orphan scan {parts['orphans']:.2f})"
        )
    print(f"{line}; {s['observe_ms'] - parts['observe']:.2f} in the engine's part")
    if cell.services > 1:
        print(
            f"  one round of all {cell.services}: cached {s['round_cached_wall_ms']:.0f} ms "
            f"wall / {s['round_cached_cpu_ms']:.0f} ms CPU; uncached "
            f"{s['round_uncached_wall_ms']:.0f} ms wall / {s['round_uncached_cpu_ms']:.0f} ms CPU"
        )


# -- a real `hedgeform run` process ------------------------------------------------------


def tick_records(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("message") in ("tick", "tick failed"):
                out.append(record)
    return out


def wait_ticks(path: Path, count: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(tick_records(path)) < count:
        if proc.poll() is not None:
            raise BenchError(f"hedgeform run exited ({proc.returncode}) before tick {count}")
        if time.monotonic() > deadline:
            raise BenchError(f"hedgeform run: no tick {count} within {timeout:.0f} s")
        time.sleep(0.02)
    failed = [r for r in tick_records(path) if r.get("message") != "tick"]
    if failed:
        raise BenchError(f"hedgeform run: a tick failed: {failed[0].get('error')}")


@dataclass
class RunFigures:
    replicas: int
    rss_kb: int
    pss_kb: int
    uss_kb: int  # private: what one more such process adds
    hwm_kb: int
    idle_cpu_per_s: float
    tick_cpu_s: float
    ticks: int
    tick_wall_s: float
    noop_ticks: int
    sandbox_procs: int
    sandbox_rss_kb: int
    sandbox_cpu_per_s: float


def measure_run_process(
    svc: Service, idle_s: float, ticks: int, cleanup: Cleanup, log_dir: Path
) -> RunFigures:
    """`hedgeform run` of `svc` as its own process, on the service the bench launched:
    A at the default 30 s interval (memory after its first tick, CPU while idle), then B
    at a 1 s interval for `ticks` counted no-op ticks (CPU per tick, the idle share taken
    out)."""
    settings = svc.rec.settings
    assert settings is not None
    env = sandbox_env(settings)
    ticks_file = svc.paths.state_dir / "ticks.jsonl"
    ticks_file.unlink(missing_ok=True)
    base = [str(HEDGEFORM), "run", svc.name, "--root", str(svc.paths.root)]

    def spawn(extra: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(log_dir / log, "wb") as out:
            proc = subprocess.Popen(
                [*base, *extra],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        cleanup.children.append(proc)
        return proc

    a = spawn(["--interval", "30"], f"run-{svc.name}-idle.log")
    try:
        wait_ticks(ticks_file, 1, a, timeout=60)
        time.sleep(1.0)
        rss, hwm = proc_kb(a.pid, "VmRSS"), proc_kb(a.pid, "VmHWM")
        pss = proc_kb(a.pid, "Pss", "smaps_rollup")
        uss = sum(proc_kb(a.pid, k, "smaps_rollup") for k in ("Private_Clean", "Private_Dirty"))
        sandbox = processes.owned_by(svc.paths.sandbox_dir)
        sandbox_rss = sum(proc_kb(p.pid, "VmRSS") for p in sandbox)
        sb0 = sum(proc_cpu_s(p.pid) for p in sandbox)  # threads come and go: not schedstat
        t0, c0 = time.monotonic(), proc_sched_s(a.pid)
        time.sleep(idle_s)
        t1, c1 = time.monotonic(), proc_sched_s(a.pid)
        sb1 = sum(proc_cpu_s(p.pid) for p in sandbox)
        if len(tick_records(ticks_file)) != 1:
            raise BenchError("hedgeform run ticked during the idle window")
        idle_rate = (c1 - c0) / (t1 - t0)
    finally:
        cleanup.stop_child(a)
    ticks_file.unlink(missing_ok=True)
    b = spawn(["--interval", "1", "--max-ticks", str(ticks + 2)], f"run-{svc.name}-ticks.log")
    try:
        wait_ticks(ticks_file, 2, b, timeout=60)
        t0, c0 = time.monotonic(), proc_cpu_s(b.pid)
        wait_ticks(ticks_file, ticks + 2, b, timeout=30 + 5 * ticks)
        t1, c1 = time.monotonic(), proc_cpu_s(b.pid)
        b.wait(timeout=30)
    finally:
        cleanup.stop_child(b)
    counted = tick_records(ticks_file)[2:]
    noop = sum(1 for r in counted if not any(s["changed"] for s in r["stacks"].values()))
    return RunFigures(
        replicas=len(svc.rec.managed()),
        rss_kb=rss,
        pss_kb=pss,
        uss_kb=uss,
        hwm_kb=hwm,
        idle_cpu_per_s=idle_rate,
        tick_cpu_s=((c1 - c0) - idle_rate * (t1 - t0)) / ticks,
        ticks=ticks,
        tick_wall_s=med([r["durations"]["total_s"] for r in counted]),
        noop_ticks=noop,
        sandbox_procs=len(sandbox),
        sandbox_rss_kb=sandbox_rss,
        sandbox_cpu_per_s=(sb1 - sb0) / idle_s,
    )


def print_run(r: RunFigures) -> None:
    print(
        f"\nhedgeform run, {r.replicas} replicas: RSS {r.rss_kb / 1024:.0f} MiB after its first "
        f"tick (PSS {r.pss_kb / 1024:.0f} MiB, private {r.uss_kb / 1024:.0f} MiB, peak "
        f"{r.hwm_kb / 1024:.0f} MiB); idle between "
        f"ticks {1e3 * r.idle_cpu_per_s:.2f} ms CPU/s; a no-op tick {1e3 * r.tick_cpu_s:.1f} ms "
        f"CPU ({r.noop_ticks} of {r.ticks} ticks no-ops, median {1e3 * r.tick_wall_s:.0f} ms "
        f"wall)"
    )
    print(
        f"  its sandbox (not part of a cloud deployment): {r.sandbox_procs} processes, "
        f"{r.sandbox_rss_kb / 1024:.0f} MiB RSS, {1e3 * r.sandbox_cpu_per_s:.1f} ms CPU/s"
    )


@dataclass
class Replacement:
    replicas: int
    passes: list[PassSample]
    settled_after_s: float  # from the kill until a pass planned nothing


def measure_replacement(svc: Service) -> Replacement:
    """Kill one replica (SIGKILL) and pass until the service is back to a no-op pass: the
    passes that change something are what a changing tick costs (Terraform plan + apply)."""
    status = next(s for s in replicas.list_replicas(svc.paths.sandbox_dir) if s.alive)
    os.kill(status.record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while replicas.is_alive(status.record) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    changing: list[PassSample] = []
    while time.monotonic() - started < 120:
        sample = one_pass(svc, uncached=False, expect_noop=False)
        if sample.planned == 0:
            return Replacement(len(svc.rec.managed()), changing, time.monotonic() - started)
        changing.append(sample)
        while any(r.state is ReplicaState.STARTING for r in svc.rec.current_replicas()):
            time.sleep(0.25)
        time.sleep(0.5)  # HAProxy's own check of a new member
    raise BenchError(f"{svc.name}: not back to a no-op pass 120 s after a replica was killed")


def print_replacement(r: Replacement) -> None:
    parts = ", ".join(
        f"{1e3 * (p.cpu_py + p.cpu_tf):.0f} ms CPU ({1e3 * p.cpu_tf:.0f} in Terraform; "
        f"{p.planned} stacks planned, {p.total:.2f} s wall)"
        for p in r.passes
    )
    print(
        f"  one killed replica of {r.replicas}: {len(r.passes)} changing passes until a "
        f"no-op again: {parts}"
    )


def terraform_peak_kb(svc: Service) -> int:
    """Peak summed RSS of the Terraform processes (and provider plugins) of one pass with
    every stack planned, sampled every 10 ms (an extra pass, not among the timed ones)."""
    stack_dirs = [svc.paths.stack_dir(s) for s in svc.rec.stack_names]
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            total = 0
            for pid in terraform_processes(stack_dirs):
                with contextlib.suppress(OSError):
                    total += proc_kb(pid, "VmRSS")
            peak = max(peak, total)
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        one_pass(svc, uncached=True)
    finally:
        done.set()
        sampler.join()
    return peak


# -- the fake cells ----------------------------------------------------------------------


@dataclass
class StateFake(FakeBackend):
    """FakeBackend whose managed replicas are read from each region stack's Terraform state
    file with the sandbox's own parser (so a pass pays a real state read); all READY."""

    paths: ServicePaths | None = None

    def _from_state(self) -> list[ManagedReplica]:
        assert self.paths is not None
        out: list[ManagedReplica] = []
        for stack in self.stacks():
            if stack.name != FRONT:
                out += managed_replicas(self.paths.stack_dir(stack.name))
        return out

    def managed(self) -> list[ManagedReplica]:
        self.managed_replicas = self._from_state()
        return super().managed()

    def observe(
        self, spec: ServiceSpec, since: Since, now: float, look: Look, *, collect: bool = True
    ) -> Observed:
        self.calls.clear()
        self.managed_replicas = self._from_state()
        return super().observe(spec, since, now, look, collect=collect)


@dataclass
class ConvergingRunner(FakeTerraformRunner):
    """The fake runner, whose plan changes something exactly when the stack's variables
    differ from those last applied, as Terraform's plan of the local module would."""

    applied: str = ""

    def plan(self, var_file: Path | None = None, *, destroy: bool = False) -> PlanResult:
        self.changed = var_file is not None and var_file.read_text() != self.applied
        return super().plan(var_file, destroy=destroy)


def write_fake_state(runner: FakeTerraformRunner, var_file: Path | None) -> None:
    """What Terraform's apply of terraform/modules/local would leave in the state: one
    null_resource.replica instance per replica, with the module's triggers."""
    if var_file is None:
        return
    text = var_file.read_text()
    if isinstance(runner, ConvergingRunner):
        runner.applied = text
    tfvars = json.loads(text)
    instances = [
        {
            "index_key": rid,
            "schema_version": 0,
            "attributes": {
                "id": str(abs(hash(rid))),
                "triggers": {
                    "hedgeform_bin": tfvars["hedgeform_bin"],
                    "market": r["market"],
                    "replica_id": rid,
                    "sandbox_dir": tfvars["sandbox_dir"],
                    "service": tfvars["service"],
                    "zone": r["zone"],
                },
            },
            "sensitive_attributes": [],
            "private": "bnVsbA==",
        }
        for rid, r in sorted(tfvars["replicas"].items())
    ]
    resources = [
        {
            "module": "module.stack",
            "mode": "managed",
            "type": "null_resource",
            "name": "replica",
            "provider": 'provider["registry.terraform.io/hashicorp/null"]',
            "instances": instances,
        }
    ]
    state = {
        "version": 4,
        "terraform_version": "1.0.3",
        "serial": len(runner.calls),
        "lineage": f"bench-{runner.name}",
        "outputs": {},
        "resources": resources if instances else [],
    }
    write_atomic(var_file.parent / STATE_FILE, json.dumps(state, indent=2) + "\n")


def fake_service(root: Path, name: str, n: int) -> Service:
    spec = write_spec(root, name, ON_DEMAND, n)
    paths = ServicePaths.for_service(name, root=root)
    runners: dict[str, FakeTerraformRunner] = {}

    def factory(stack: str, stack_dir: Path, module_dir: Path) -> FakeTerraformRunner:
        return runners.setdefault(stack, ConvergingRunner(name=stack, on_apply=write_fake_state))

    backend = StateFake(spec, paths.sandbox_dir, plan_cache=True, paths=paths)
    rec = Reconciler(paths, spec, runner_factory=factory, backend=backend)
    return Service(name, rec, PhaseTimer(rec), runners)


def fake_cell(
    parent: Path, services: int, n: int, runs: int, uncached_runs: int, calls: int
) -> CellResult:
    runs = max(runs, -(-FAKE_PASSES // services))  # a fake pass is short: take enough of them
    uncached_runs = max(uncached_runs, -(-FAKE_PASSES // services)) if uncached_runs else 0
    root = project_root(parent, f"fake-{services}x{n}")
    svcs = [fake_service(root, f"f{n}-{i:03d}", n) for i in range(services)]
    for svc in svcs:  # launch (the fake apply writes the state; the guardrails launch a few
        # at a time), then the members, until a pass plans nothing
        for _ in range(20):
            if one_pass(svc, uncached=False, expect_noop=False).planned == 0:
                break
        if len(svc.rec.managed()) != n:
            raise BenchError(f"{svc.name}: {len(svc.rec.managed())} replicas, not {n}")
    cell = measure_cell("fake", svcs, n, runs, uncached_runs, calls)
    if any(s.planned for s in cell.cached):
        raise BenchError("a fake cached pass planned a stack: not the steady state")
    shutil.rmtree(root, ignore_errors=True)
    return cell


# -- /proc scans -------------------------------------------------------------------------


def proc_scans(parent: Path, extra_counts: Sequence[int], cleanup: Cleanup) -> list[dict[str, Any]]:
    """Every pass scans /proc for stray provider plugins of its stacks (any backend), and the
    sandbox's observation scans it again for unrecorded replicas (each process's environ).
    Timed with `extra` idle processes (`sleep`) added to the host, as other services' loops
    and sandboxes would be."""
    stack_dirs = [parent / "scan" / s for s in ("local-1", "local-2", FRONT)]
    for d in stack_dirs:
        d.mkdir(parents=True, exist_ok=True)
    sandbox = parent / "scan" / "sandbox"
    out = []
    sleepers: list[subprocess.Popen[bytes]] = []
    try:
        for extra in sorted(extra_counts):
            while len(sleepers) < extra:
                proc = subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL)
                sleepers.append(proc)
                cleanup.children.append(proc)
            entries = proc_entries()
            cwd, env = [], []
            for _ in range(7):
                t = time.perf_counter()
                stray_terraform_processes(stack_dirs)
                cwd.append(time.perf_counter() - t)
                t = time.perf_counter()
                processes.owned_by(sandbox)
                env.append(time.perf_counter() - t)
            out.append(
                {
                    "extra": extra,
                    "entries": entries,
                    "stray_ms": 1e3 * med(cwd),
                    "owned_by_ms": 1e3 * med(env),
                }
            )
    finally:
        for proc in sleepers:
            proc.kill()
        for proc in sleepers:
            proc.wait()
            cleanup.children.remove(proc)
    return out


# -- services per host -------------------------------------------------------------------


def mem_total_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def per_process_ms(scans: Sequence[dict[str, Any]], key: str) -> float:
    """What one more process on the host adds to a scan (ms), from the fewest and the most
    processes timed."""
    if len(scans) < 2:
        return 0.0
    lo, hi = scans[0], scans[-1]
    return float((hi[key] - lo[key]) / max(1, hi["entries"] - lo["entries"]))


def fit(budget_s: float, fixed_s: float, per_service_scan_s: float) -> int:
    """Services whose steady CPU per tick fits `budget_s`: each costs `fixed_s`, plus a scan
    that grows with the services on the host (`per_service_scan_s` per other service)."""
    n = budget_s / fixed_s
    for _ in range(50):
        n = budget_s / (fixed_s + per_service_scan_s * n)
    return int(n)


def capacity(results: dict[str, Any], interval: float, busy: float, mem_free: float) -> None:
    """Services one host keeps on an `interval` tick with at most `busy` of its CPU and at
    least `mem_free` of its memory free: from the `hedgeform run` figures (tick and idle CPU,
    private memory), the 1-service sandbox cells (what planning every stack adds), the /proc
    scan slope, the Terraform peak and the replacement passes."""
    cores = os.cpu_count() or 1
    budget = cores * interval * busy
    mem = mem_total_kb()
    for_loops = mem * (1 - mem_free)
    cells = {
        c["replicas"]: c for c in results["cells"] if c["kind"] == "sandbox" and c["services"] == 1
    }
    stray = per_process_ms(results["scans"], "stray_ms") / 1e3
    environ = per_process_ms(results["scans"], "owned_by_ms") / 1e3
    peak = max(results["terraform_peak_kb"].values(), default=0)
    print(
        f"\nservices per host: {cores} cores x {interval:.0f} s x {busy:.0%} busy = "
        f"{budget:.0f} CPU-s a tick; {mem / 2**20:.1f} GiB of memory, {mem_free:.0%} kept free "
        f"(room for {int(mem * mem_free / peak) if peak else 0} services' Terraform at once, "
        f"{peak / 1024:.0f} MiB each) leaves {for_loops / 2**20:.1f} GiB for the loops. Each "
        f"pass scans /proc: {1e6 * stray:.1f} us per process on the host (the sandbox: another "
        f"{1e6 * environ:.1f} us)"
    )
    for run in results["run"]:
        n = run["replicas"]
        tick, idle = run["tick_cpu_s"], run["idle_cpu_per_s"]
        steady = tick + idle * interval
        by_mem = int(for_loops / run["uss_kb"])
        by_cpu = fit(budget, steady, stray)
        print(
            f"  {n} replicas, plan cache hits (local stacks): {1e3 * tick:.1f} ms a no-op tick "
            f"+ {interval:.0f} s x {1e3 * idle:.2f} ms/s idle = {1e3 * steady:.1f} ms CPU a "
            f"service a tick; {budget:.0f} / {steady:.4f} = {budget / steady:.0f}, "
            f"{by_cpu} once every loop is in each pass's /proc scan; memory: "
            f"{run['uss_kb'] / 1024:.0f} MiB private ({run['rss_kb'] / 1024:.0f} MiB RSS) a "
            f"loop -> {by_mem}; so {min(by_cpu, by_mem)} services"
        )
        cell = cells.get(n)
        if cell is not None:
            extra = (cell["cpu_uncached_ms"] - cell["cpu_cached_ms"]) / 1e3
            planned = steady + extra
            print(
                f"  {n} replicas, every stack planned (as a cloud stack always is; here the "
                f"null provider): {1e3 * steady:.1f} + {1e3 * extra:.0f} ms = "
                f"{1e3 * planned:.0f} ms a service a tick -> {budget / planned:.1f} services"
            )
        sandbox = run["sandbox_cpu_per_s"] * interval
        sb_fixed = steady + sandbox
        per_other = (stray + environ) * (n + 3)  # a loop, HAProxy, the market, n replicas
        sb_cpu = fit(budget, sb_fixed, per_other)
        sb_mem = int(for_loops / (run["uss_kb"] + run["sandbox_rss_kb"]))
        print(
            f"  {n} replicas on the sandbox, its processes on the host too "
            f"({1e3 * run['sandbox_cpu_per_s']:.1f} ms/s = {1e3 * sandbox:.0f} ms a tick, "
            f"{run['sandbox_rss_kb'] / 1024:.0f} MiB): {1e3 * sb_fixed:.0f} ms -> "
            f"{budget / sb_fixed:.0f}, {sb_cpu} with the scans; memory -> {sb_mem}; so "
            f"{min(sb_cpu, sb_mem)} services"
        )
    for rep in results["replacement"]:
        cpu = sum(p["cpu_py"] + p["cpu_tf"] for p in rep["passes"])
        spare = cores * interval - budget
        print(
            f"  a replaced replica ({rep['replicas']} replicas): {cpu:.2f} CPU-s over "
            f"{len(rep['passes'])} changing passes; the other {spare:.0f} CPU-s of a tick "
            f"absorb {spare / cpu:.0f} such replacements at once"
        )


# -- main --------------------------------------------------------------------------------


def parse_cells(text: str) -> list[tuple[int, int]]:
    cells = []
    for part in filter(None, text.split(",")):
        services, _, n = part.partition("x")
        cells.append((int(services), int(n)))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--real",
        default="1x3,10x3,1x30",
        help="sandbox cells SERVICESxREPLICAS (default 1x3,10x3,1x30; '' none)",
    )
    parser.add_argument(
        "--fake-services",
        default="1,10,100",
        help="services per fake cell (default 1,10,100; '' none)",
    )
    parser.add_argument(
        "--replicas", default="3,30", help="replicas per service of the fake cells (default 3,30)"
    )
    parser.add_argument("--runs", type=int, default=5, help="cached passes per service")
    parser.add_argument(
        "--uncached-runs", type=int, default=3, help="passes per service with every stack planned"
    )
    parser.add_argument(
        "--decide-calls", type=int, default=2000, help="policy calls per batch (5 batches)"
    )
    parser.add_argument(
        "--run-ticks",
        type=int,
        default=20,
        help="no-op ticks of `hedgeform run` counted (0: skip that process)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=10.0,
        help="how long `hedgeform run` is watched while idle",
    )
    parser.add_argument(
        "--scan-extra",
        default="0,100,600,3300",
        help="idle processes added for the /proc scan timing ('' to skip)",
    )
    parser.add_argument("--cold-start", type=float, default=1.0)
    parser.add_argument(
        "--interval", type=float, default=30.0, help="the loop's tick for the capacity figure"
    )
    parser.add_argument(
        "--busy", type=float, default=0.5, help="how busy the host may be kept (0.5: half)"
    )
    parser.add_argument(
        "--memory-free",
        type=float,
        default=0.5,
        help="memory kept free for Terraform's processes (0.5: half)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer of everything: 1x3 and 1x30 real, 2 runs, 8 ticks",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    if args.quick:
        args.real, args.runs, args.uncached_runs = "1x3,1x30", 2, 2
        args.run_ticks, args.idle_seconds, args.decide_calls = 8, 5.0, 100
        args.scan_extra = "0,600"
    real_cells = parse_cells(args.real)
    fake_counts = [int(x) for x in args.fake_services.split(",") if x]
    replica_counts = [int(x) for x in args.replicas.split(",") if x]
    started = time.monotonic()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f}; {proc_entries()} processes on the host"
    )

    tmp = Path(tempfile.mkdtemp(prefix="hedgeform-scale-"))
    cleanup = Cleanup()
    results: dict[str, Any] = {
        "cells": [],
        "run": [],
        "replacement": [],
        "decide": [],
        "terraform_peak_kb": {},
        "scans": [],
    }
    try:
        with interruptible(cleanup):
            real_root = project_root(tmp, "real")
            by_replicas: dict[int, list[Service]] = {}
            for services, n in sorted(real_cells, key=lambda c: (c[1], c[0])):
                have = by_replicas.setdefault(n, [])
                if len(have) > services:  # a smaller cell after a larger one: start afresh
                    cleanup.stop_sandboxes([s.paths.sandbox_dir for s in have])
                    have.clear()
                new = [
                    real_service(real_root, f"r{n}-{i:03d}", n, args.cold_start, cleanup)
                    for i in range(len(have), services)
                ]
                t = time.perf_counter()
                with ThreadPoolExecutor(max_workers=2) as pool:
                    list(pool.map(launch, new))
                have += new
                print(
                    f"\nlaunched {len(new)} service(s) of {n} replicas in "
                    f"{time.perf_counter() - t:.1f} s"
                )
                cell = measure_cell(
                    "sandbox", have, n, args.runs, args.uncached_runs, args.decide_calls
                )
                print_cell(cell)
                results["cells"].append(cell.summary())
                if services == 1:
                    peak = terraform_peak_kb(have[0])
                    results["terraform_peak_kb"][str(n)] = peak
                    print(
                        f"  Terraform of one pass with every stack planned: peak "
                        f"{peak / 1024:.0f} MiB RSS (all its processes, summed)"
                    )
                    if args.run_ticks:
                        run = measure_run_process(
                            have[0], args.idle_seconds, args.run_ticks, cleanup, tmp
                        )
                        print_run(run)
                        results["run"].append(asdict(run))
                    rep = measure_replacement(have[0])
                    print_replacement(rep)
                    results["replacement"].append(
                        {
                            "replicas": rep.replicas,
                            "settled_after_s": rep.settled_after_s,
                            "passes": [asdict(p) for p in rep.passes],
                        }
                    )
                if not any(c[1] == n and c[0] > services for c in real_cells):
                    cleanup.stop_sandboxes([s.paths.sandbox_dir for s in have])
                    cleanup.services = [s for s in cleanup.services if s not in have]
                    have.clear()

            for n in replica_counts:
                for services in fake_counts:
                    cell = fake_cell(
                        tmp, services, n, args.runs, args.uncached_runs, args.decide_calls
                    )
                    print_cell(cell)
                    results["cells"].append(cell.summary())

            spec_root = project_root(tmp, "decide")
            print("\nthe pure policy call (decide), median of 5 batches:")
            for n in replica_counts:
                for template, label in ((ON_DEMAND, "on-demand"), (SPOTHEDGE, "spothedge")):
                    spec = write_spec(spec_root, f"{label}-{n}", template, n)
                    observed, signals, memory, now = spothedge_steady(spec)
                    per_call = time_decide(spec, observed, signals, memory, now, args.decide_calls)
                    markets = sorted({r.market.value for r in observed.replicas})
                    print(
                        f"  {label} spec, {n} replicas wanted: {len(observed.replicas)} "
                        f"replicas ({'+'.join(markets)}) -> {1e6 * per_call:.0f} us a call"
                    )
                    results["decide"].append(
                        {
                            "spec": label,
                            "replicas": n,
                            "observed": len(observed.replicas),
                            "us": 1e6 * per_call,
                        }
                    )

            extra = [int(x) for x in args.scan_extra.split(",") if x]
            if extra:
                scans = proc_scans(tmp, extra, cleanup)
                results["scans"] = scans
                print("\n/proc scans of one pass (median of 7):")
                for s in scans:
                    print(
                        f"  {s['entries']} processes: stray-provider scan {s['stray_ms']:.2f} "
                        f"ms, sandbox environ scan {s['owned_by_ms']:.2f} ms"
                    )
            capacity(results, args.interval, args.busy, args.memory_free)
    finally:
        left = [p for s in cleanup.ever for p in processes.owned_by(s)]
        shutil.rmtree(tmp, ignore_errors=True)
        if left:
            print(f"warning: still running: {', '.join(str(p.pid) for p in left)}")
    print(f"\nbench took {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: everything the bench started was stopped", file=sys.stderr)
        sys.exit(130)
