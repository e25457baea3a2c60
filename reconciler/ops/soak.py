"""`hedgeform soak`: replay a real spot trace in the sandbox, fast, and measure the service end
to end under the real unattended loop.

It builds a throwaway project root, starts `hedgeform run` as a subprocess (the command an
operator would leave running), waits for the first convergence, sends constant load through
HAProxy while sampling every second what is ready, what the LB serves and what failed, then
stops the loop with SIGTERM, destroys the service and checks nothing of the root is left
running. Figures and targets: reconciler/ops/soak_report.py; results: docs/soak.md.

Exit codes: 0 every target met; 1 a target missed (so CI catches regressions); 2 the soak could
not run or did not complete (no convergence, the loop died); 130 interrupted (Ctrl-C), after
cleaning up all the same.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import click
import requests

from reconciler.errors import SandboxError, SoakError, SpecError, TraceError
from reconciler.files import find_executable
from reconciler.ops.soak_report import (
    Sample,
    SoakReport,
    availability_pct,
    cost_pct,
    failed_pct,
    notice_times,
    percentile,
    read_jsonl,
    tick_stats,
    with_requests,
    write_plot,
)
from reconciler.paths import PROJECT_ROOT
from reconciler.sandbox import market_daemon, processes, replicas
from reconciler.sandbox.haproxy import BACKEND, FRONTEND, HAProxyLB, haproxy_binary
from reconciler.sandbox.loadgen import LoadResult, run_load
from reconciler.sandbox.market import DEFAULT_TRACE_DIR, SpotMarket
from reconciler.spec import load_spec
from reconciler.traces import load_trace_set

SERVICE = "llama"
PROBE_TIMEOUT_S = 0.5
EXIT_TARGET_MISSED = 1
EXIT_INCOMPLETE = 2
EXIT_INTERRUPTED = 130

Echo = Callable[[str], None]


@dataclass(frozen=True)
class SoakSettings:
    service_file: Path = PROJECT_ROOT / "services" / "llama.yaml"
    traces: Path = DEFAULT_TRACE_DIR
    offset_hours: float = 0.0
    speed: float = 360.0
    warning_s: float = 30.0  # GCP/Azure give 30 s, AWS 120 s: the shortest real warning
    cold_start_s: float = 2.0
    latency_ms: float = 5.0
    interval_s: float = 5.0
    qps: float = 5.0
    duration_s: float = 600.0
    policy: str = "hedgeform"
    lb_port: int | None = None
    converge_timeout_s: float = 180.0
    stop_timeout_s: float = 60.0
    progress_every_s: float = 10.0

    def describe(self) -> dict[str, Any]:
        return {
            "service_file": str(self.service_file),
            "traces": str(self.traces),
            "offset_hours": self.offset_hours,
            "speed": self.speed,
            "warning_s": self.warning_s,
            "cold_start_s": self.cold_start_s,
            "latency_ms": self.latency_ms,
            "interval_s": self.interval_s,
            "qps": self.qps,
            "duration_s": self.duration_s,
            "policy": self.policy,
        }


@dataclass
class SoakRun:
    """A finished soak: the report plus the timeline it was computed from."""

    report: SoakReport
    samples: list[Sample]
    preempted_at: list[float]
    warned_at: list[float]
    root: Path
    interrupted: bool = False


# -- the throwaway root ------------------------------------------------------------------------


def build_root(root: Path, settings: SoakSettings) -> Path:
    """A project root like tests/e2e/conftest.py's: its own services/ and state/, the repo's
    Terraform modules and pinned tools linked. Returns the trace directory the market replays."""
    if not settings.service_file.is_file():
        raise SoakError(f"{settings.service_file}: no such service file")
    (root / "services").mkdir(parents=True, exist_ok=True)
    shutil.copy(settings.service_file, root / "services" / f"{SERVICE}.yaml")
    (root / "terraform").symlink_to(PROJECT_ROOT / "terraform")
    tools = PROJECT_ROOT / ".tools"
    if tools.is_dir():
        (root / ".tools").symlink_to(tools)
    elif not os.environ.get("TERRAFORM_BIN"):
        raise SoakError("the pinned Terraform is not installed: run `make setup`")
    try:
        spec = load_spec(root / "services" / f"{SERVICE}.yaml")
    except SpecError as exc:
        raise SoakError(str(exc)) from None
    zones = sorted({loc.zone for loc in spec.resources.locations if loc.zone})
    return prepare_traces(settings.traces, zones, root / "traces")


def prepare_traces(src: Path, zones: list[str], dest: Path) -> Path:
    """The trace directory for the sandbox's zones. A directory whose files already name them
    (`local-1a_v100_1.json`) is used as it is; one with exactly as many zone files under other
    names (a SpotHedge set such as AWS1) is copied with the zones mapped in sorted order, as
    reconciler/data/traces/sandbox was made."""
    try:
        traces = load_trace_set(src)
        traces.require_one_type("the soak")
    except TraceError as exc:
        raise SoakError(str(exc)) from None
    names = sorted(t.zone for t in traces.zones)
    if set(zones) <= set(names):
        return src
    if len(names) != len(zones):
        raise SoakError(
            f"{src}: trace files for zones {', '.join(names)} do not match the service's zones "
            f"{', '.join(zones)}: name the files <zone>_<gpu>_<count>.json, or give exactly "
            f"{len(zones)} files to map in sorted order"
        )
    dest.mkdir(parents=True, exist_ok=True)
    by_zone = {t.zone: t.source for t in traces.zones}
    for zone, name in zip(zones, names, strict=True):
        source = by_zone[name]
        rest = source.name.split("_", 1)[1] if "_" in source.name else "trace.json"
        shutil.copy(source, dest / f"{zone}_{rest}")
    return dest


def child_env(settings: SoakSettings, lb_port: int) -> dict[str, str]:
    """The sandbox settings for the loop, destroy and the provisioners they run."""
    env = dict(os.environ)
    env.update(
        {
            "HEDGEFORM_LB_PORT": str(lb_port),
            "HEDGEFORM_SANDBOX_SPEED": str(settings.speed),
            "HEDGEFORM_SANDBOX_OFFSET_HOURS": str(settings.offset_hours),
            "HEDGEFORM_SANDBOX_WARNING": str(settings.warning_s),
            "HEDGEFORM_SANDBOX_COLD_START": str(settings.cold_start_s),
            "HEDGEFORM_SANDBOX_LATENCY_MS": str(settings.latency_ms),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("HEDGEFORM_CRASH_AT", None)  # fault injection is for the crash tests only
    return env


def hedgeform_bin() -> str:
    found = find_executable("hedgeform")
    if found is None:
        raise SoakError("cannot find the `hedgeform` executable: run `make setup`")
    return str(found)


# -- processes of the root ---------------------------------------------------------------------


def find_orphans(root: Path, exclude: set[int] | None = None) -> list[str]:
    """Every live process whose command line names `root` or whose working directory is
    inside it (replicas, HAProxy, the market daemon, the loop, Terraform), as `pid: argv`."""
    exclude = {os.getpid(), *(exclude or set())}
    needles = {str(root), str(root.resolve())}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        pid = int(entry.name)
        argv = processes.cmdline(pid)
        if argv is None:  # gone or a zombie
            continue
        joined = " ".join(argv)
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if any(n in joined for n in needles) or any(
            cwd == n or cwd.startswith(n + "/") for n in needles
        ):
            found.append(f"{pid}: {joined[:160]}")
    return sorted(found)


def clean_up_root(root: Path) -> None:
    """What tests/e2e/conftest.py does after a failed test: stop whatever the sandbox
    recorded. Only after the orphans were counted, so the count stays honest."""
    sandbox = root / "state" / SERVICE / "sandbox"
    if sandbox.exists():
        with contextlib.suppress(SandboxError, OSError):
            replicas.stop_all(sandbox)
        with contextlib.suppress(SandboxError, OSError):
            HAProxyLB(sandbox).down()
        with contextlib.suppress(SandboxError, OSError):
            market_daemon.stop(sandbox)


# -- sampling ---------------------------------------------------------------------------------


class TickTail:
    """Follows the loop's ticks.jsonl: the target of its latest tick, and how many ran."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.target: int | None = None
        self.ticks = 0
        self.failed = 0

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for rec in read_jsonl_bytes(data[:end]):
            if rec.get("message") == "tick":
                self.ticks += 1
                target = rec.get("decision", {}).get("target")
                if isinstance(target, int):
                    self.target = target
            elif rec.get("message") == "tick failed":
                self.failed += 1


def read_jsonl_bytes(data: bytes) -> list[dict[str, Any]]:
    import json

    out = []
    for line in data.splitlines():
        with contextlib.suppress(ValueError):
            raw = json.loads(line)
            if isinstance(raw, dict):
                out.append(raw)
    return out


@dataclass
class LBView:
    members: int = 0
    up: int = 0
    requests: int = 0
    errors_5xx: int = 0
    retries: int = 0
    redispatches: int = 0


class Sampler:
    """One look at the service: replicas by market (alive, and ready by their probe), the LB's
    servers and counters, and the loop's target."""

    def __init__(self, root: Path) -> None:
        self.sandbox = root / "state" / SERVICE / "sandbox"
        self.ticks = TickTail(root / "state" / SERVICE / "ticks.jsonl")
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.local = threading.local()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _healthy(self, url: str) -> bool:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.trust_env = False  # never route loopback probes through an env proxy
        try:
            return bool(session.get(f"{url}/health", timeout=PROBE_TIMEOUT_S).status_code == 200)
        except requests.RequestException:
            return False

    def lb(self) -> LBView:
        view = LBView()
        try:
            rows = HAProxyLB(self.sandbox).stats()
        except (SandboxError, OSError):
            return view
        for row in rows:
            if row.get("pxname") == BACKEND and row.get("svname") not in ("FRONTEND", "BACKEND"):
                view.members += 1
                view.up += row.get("status", "").startswith("UP")
            elif row.get("pxname") == BACKEND and row.get("svname") == "BACKEND":
                view.retries = _int(row.get("wretr"))
                view.redispatches = _int(row.get("wredis"))
            elif row.get("pxname") == FRONTEND and row.get("svname") == "FRONTEND":
                view.requests = _int(row.get("req_tot"))
                view.errors_5xx = _int(row.get("hrsp_5xx"))
        return view

    def sample(self, t: float) -> tuple[Sample, LBView]:
        self.ticks.poll()
        try:
            live = [s.record for s in replicas.list_replicas(self.sandbox) if s.alive]
        except (SandboxError, OSError):
            live = []
        healthy = list(self.pool.map(self._healthy, [r.url for r in live]))
        view = self.lb()

        def count(market: str, ready_only: bool) -> int:
            return sum(
                1 for r, ok in zip(live, healthy, strict=True)
                if r.market == market and (ok or not ready_only)
            )  # fmt: skip

        sample = Sample(
            t=round(t, 3),
            ready_spot=count("spot", True),
            ready_od=count("on_demand", True),
            running_spot=count("spot", False),
            running_od=count("on_demand", False),
            lb_members=view.members,
            lb_up=view.up,
            target=self.ticks.target,
        )
        return sample, view


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def endpoint_serves(port: int) -> bool:
    try:
        with requests.Session() as session:
            session.trust_env = False
            resp = session.post(
                f"http://127.0.0.1:{port}/v1/completions",
                json={"prompt": "soak: converged?", "max_tokens": 1},
                timeout=2,
            )
        return resp.status_code == 200
    except requests.RequestException:
        return False


# -- the run ----------------------------------------------------------------------------------


@dataclass
class _State:
    loop: subprocess.Popen[bytes] | None = None
    loop_exit: int | None = None
    loop_stop_s: float | None = None
    destroy_exit: int | None = None
    notes: list[str] = field(default_factory=list)


def _start_loop(root: Path, settings: SoakSettings, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [
        hedgeform_bin(), "run", SERVICE, "--root", str(root),
        "--interval", str(settings.interval_s), "--policy", settings.policy,
    ]  # fmt: skip
    log = open(root / "loop.log", "ab")  # noqa: SIM115 - the child keeps it; closed at stop
    try:
        # A session of its own: Ctrl-C at the terminal reaches the soak, which stops the loop
        # with SIGTERM itself, as systemd would.
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    finally:
        log.close()


def _wait_converged(
    root: Path, settings: SoakSettings, port: int, state: _State, sampler: Sampler, echo: Echo
) -> float:
    """Wait until the endpoint answers 200 and the ready replicas reach the loop's target:
    availability is measured from there, as the backtests score from the first cold start."""
    t0 = time.monotonic()
    next_line = t0 + settings.progress_every_s
    assert state.loop is not None
    while True:
        if state.loop.poll() is not None:
            raise SoakError(
                f"the loop exited with code {state.loop.returncode} before converging "
                f"(see {root / 'loop.log'})"
            )
        sample, _ = sampler.sample(0.0)
        if sample.target is not None and sample.ready >= sample.target and endpoint_serves(port):
            return time.monotonic() - t0
        now = time.monotonic()
        if now - t0 > settings.converge_timeout_s:
            raise SoakError(
                f"no convergence within {settings.converge_timeout_s:.0f} s (target "
                f"{sample.target}, ready {sample.ready}); see {root / 'loop.log'}"
            )
        if now >= next_line:
            echo(f"  waiting for convergence: {now - t0:.0f} s, ready {sample.ready}, "
                 f"target {sample.target}, ticks {sampler.ticks.ticks}")  # fmt: skip
            next_line += settings.progress_every_s
        time.sleep(0.5)


def _stop_loop(state: _State, timeout_s: float) -> None:
    """SIGTERM, as systemd stops it; the loop cancels Terraform and must exit 0 in time."""
    loop = state.loop
    if loop is None:
        return
    if loop.poll() is not None:
        state.loop_exit = loop.returncode
        state.notes.append(f"the loop had already exited (code {loop.returncode})")
        return
    t0 = time.monotonic()
    loop.send_signal(signal.SIGTERM)
    try:
        state.loop_exit = loop.wait(timeout=timeout_s)
        state.loop_stop_s = time.monotonic() - t0
    except subprocess.TimeoutExpired:
        state.notes.append(f"the loop did not exit within {timeout_s:.0f} s of SIGTERM: killed")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(loop.pid, signal.SIGKILL)
        loop.wait(timeout=10)
        state.loop_exit = None


def _destroy(root: Path, env: dict[str, str], state: _State, echo: Echo) -> None:
    argv = [hedgeform_bin(), "destroy", SERVICE, "--root", str(root), "--wait-lock"]
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        state.notes.append("destroy did not finish within 300 s")
        state.destroy_exit = None
        return
    state.destroy_exit = proc.returncode
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        state.notes.append(f"destroy exited {proc.returncode}: {' | '.join(detail)}")
    echo(f"  destroy: exit {proc.returncode}")


def run_soak(settings: SoakSettings, root: Path, echo: Echo = click.echo) -> SoakRun:
    """The whole soak in `root` (an empty directory). Always stops the loop and destroys the
    service, whatever happened before (Ctrl-C included)."""
    haproxy_binary()  # a clear error now rather than a failing tick later
    trace_dir = build_root(root, settings)
    port = settings.lb_port or processes.free_port()
    env = child_env(settings, port)
    sandbox = root / "state" / SERVICE / "sandbox"
    state = _State()
    sampler = Sampler(root)
    samples: list[Sample] = []
    load: list[LoadResult] = []
    window = (0.0, 0.0)
    interrupted = completed = False
    first_view = last_view = LBView()
    orphans: list[str] = []
    # Ctrl-C, and SIGTERM from a CI timeout, stop the soak the same way: through the cleanup
    # below (explicit, as a shell's background job inherits SIGINT ignored).
    handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # The market is created here (so --traces reaches it); the loop's first tick finds it
        # and keeps its clock. It starts daemonless; the loop starts the daemon.
        SpotMarket.init(
            sandbox,
            now=time.time(),
            trace_dir=trace_dir,
            speed=settings.speed,
            offset_s=settings.offset_hours * 3600,
            warning_seconds=settings.warning_s,
            reset=True,
        )
        echo(f"soak: root {root}, endpoint http://127.0.0.1:{port}, trace {trace_dir}")
        state.loop = _start_loop(root, settings, env)
        took = _wait_converged(root, settings, port, state, sampler, echo)
        echo(f"  converged after {took:.1f} s ({sampler.ticks.ticks} ticks); "
             f"load {settings.qps:g} req/s for {settings.duration_s:g} s")  # fmt: skip

        url = f"http://127.0.0.1:{port}"
        thread = threading.Thread(
            target=lambda: load.append(run_load(url, settings.qps, settings.duration_s)),
            daemon=True,
            name="soak-load",
        )
        start_wall, start = time.time(), time.monotonic()
        window = (start_wall, start_wall + settings.duration_s)
        thread.start()
        first_view = sampler.lb()
        seconds = max(1, math.ceil(settings.duration_s))
        next_line = settings.progress_every_s
        for i in range(seconds):
            delay = start + i + 0.5 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1:
                continue  # a slow sample: skip this second rather than bunch samples up
            if state.loop.poll() is not None:
                state.notes.append(
                    f"the loop exited with code {state.loop.returncode} during the load"
                )
                break
            sample, last_view = sampler.sample(time.monotonic() - start)
            samples.append(sample)
            if sample.t >= next_line:
                echo(_progress(sample, last_view, first_view, sampler))
                next_line += settings.progress_every_s
        else:
            thread.join(timeout=settings.duration_s + 60)
            completed = bool(load)
            if not load:
                state.notes.append("the load generator did not finish")
    except KeyboardInterrupt:
        interrupted = True
        state.notes.append("interrupted (Ctrl-C): partial figures")
        echo("\ninterrupted: stopping the loop and destroying the service")
    except SoakError as exc:
        state.notes.append(str(exc))
        echo(f"error: {exc}")
    finally:
        for sig in handlers:  # the cleanup must finish
            signal.signal(sig, signal.SIG_IGN)
        try:
            echo("  stopping the loop (SIGTERM) and destroying the service")
            _stop_loop(state, settings.stop_timeout_s)
            _destroy(root, env, state, echo)
            time.sleep(0.5)  # let processes that are exiting finish exiting
            orphans = find_orphans(root)
            if orphans:
                clean_up_root(root)
            sampler.close()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    report, samples, preempted, warned = _report(
        settings, root, samples, load, window, state, orphans, completed
    )
    if last_view.requests:
        report.notes.append(
            f"HAProxy in the load window: {last_view.retries - first_view.retries} retries, "
            f"{last_view.redispatches - first_view.redispatches} redispatches, "
            f"{last_view.errors_5xx - first_view.errors_5xx} 5xx answers"
        )
    return SoakRun(report, samples, preempted, warned, root, interrupted)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _progress(sample: Sample, view: LBView, first: LBView, sampler: Sampler) -> str:
    return (
        f"  [{sample.t:5.0f} s] ready spot {sample.ready_spot} od {sample.ready_od} "
        f"(target {sample.target}) | LB {view.up}/{view.members} up | "
        f"requests {view.requests - first.requests}, 5xx {view.errors_5xx - first.errors_5xx}, "
        f"retries {view.retries - first.retries} | ticks {sampler.ticks.ticks} "
        f"(failed {sampler.ticks.failed})"
    )


def _report(
    settings: SoakSettings,
    root: Path,
    samples: list[Sample],
    load: list[LoadResult],
    window: tuple[float, float],
    state: _State,
    orphans: list[str],
    completed: bool,
) -> tuple[SoakReport, list[Sample], list[float], list[float]]:
    result = load[0] if load else None
    if result is not None:
        samples = with_requests(samples, result.per_second)
    start, end = window
    ticks = tick_stats(read_jsonl(root / "state" / SERVICE / "ticks.jsonl"), start, end)
    notices = read_jsonl(root / "state" / SERVICE / "sandbox" / "notices.jsonl")
    preempted = notice_times(notices, "preempted", start, end) if end else []
    warned = notice_times(notices, "warning", start, end) if end else []
    ok = result.successes if result else 0
    failed = result.failures if result else 0
    report = SoakReport(
        settings=settings.describe(),
        duration_s=settings.duration_s if completed else float(len(samples)),
        availability_pct=availability_pct(samples),
        serving_availability_pct=availability_pct(samples, serving=True),
        requests=ok + failed,
        failed_requests=failed,
        failed_pct=failed_pct(ok, failed),
        errors=dict(result.errors) if result else {},
        p50_ms=result.p50_ms if result else None,
        p90_ms=result.p90_ms if result else None,
        p99_ms=result.p99_ms if result else None,
        cost_pct=cost_pct(samples),
        preemptions=len(preempted),
        warnings=len(warned),
        capacity_errors=ticks.capacity_errors,
        ticks=ticks.ticks,
        failed_ticks=ticks.failed_ticks,
        tick_p50_s=percentile(ticks.durations_s, 50),
        tick_p99_s=percentile(ticks.durations_s, 99),
        orphans=orphans,
        loop_exit=state.loop_exit,
        loop_stop_s=state.loop_stop_s,
        destroy_exit=state.destroy_exit,
        completed=completed,
        notes=list(state.notes),
    )
    return report, samples, preempted, warned


# -- the command ------------------------------------------------------------------------------


@click.command("soak")
@click.option(
    "--service-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=PROJECT_ROOT / "services" / "llama.yaml",
    show_default="services/llama.yaml",
    help="Service spec to serve (copied into the throwaway root as llama).",
)
@click.option(
    "--traces",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=DEFAULT_TRACE_DIR,
    show_default="the sandbox's AWS1 sample",
    help="Trace directory: files named for the sandbox zones, or one file per zone (mapped "
    "in sorted order).",
)
@click.option("--offset-hours", default=0.0, show_default=True, help="Where in the trace to start.")
@click.option("--speed", default=360.0, show_default=True, help="Trace seconds per wall second.")
@click.option(
    "--warning",
    default=30.0,
    show_default=True,
    help="Preemption warning in wall seconds (GCP/Azure give 30, AWS 120).",
)
@click.option("--cold-start", default=2.0, show_default=True, help="Replica cold start (s).")
@click.option("--latency-ms", default=5.0, show_default=True, help="Latency per completion.")
@click.option("--interval", default=5.0, show_default=True, help="Loop interval (wall s).")
@click.option("--qps", default=5.0, show_default=True, help="Constant request rate.")
@click.option("--duration", default=600.0, show_default=True, help="Load window (wall s).")
@click.option("--policy", default="hedgeform", show_default=True, help="Policy for the loop.")
@click.option("--lb-port", type=int, default=None, help="LB port [a free one].")
@click.option("--converge-timeout", default=180.0, show_default=True, help="Seconds to converge.")
@click.option("--stop-timeout", default=60.0, show_default=True, help="SIGTERM to exit, at most.")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write the figures and the per-second samples here.",
)  # fmt: skip
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write the timeline PNG here.",
)  # fmt: skip
@click.option("--keep", is_flag=True, help="Keep the throwaway root (logs, ticks, notices).")
def soak(
    service_file: Path,
    traces: Path,
    offset_hours: float,
    speed: float,
    warning: float,
    cold_start: float,
    latency_ms: float,
    interval: float,
    qps: float,
    duration: float,
    policy: str,
    lb_port: int | None,
    converge_timeout: float,
    stop_timeout: float,
    json_path: Path | None,
    plot: Path | None,
    keep: bool,
) -> None:
    """Replay a spot trace in the sandbox, fast, under `hedgeform run`, with constant load.

    Reports availability, failed requests, latency, cost vs on-demand, preemptions, capacity
    errors, ticks and orphaned processes, and checks the targets (failed <= 0.5 %,
    availability >= 99 %, nothing left running). Exit 0: all met; 1: a target missed;
    2: the soak could not run or complete; 130: interrupted.
    """
    if min(speed, interval, qps, duration) <= 0 or min(warning, cold_start, latency_ms) < 0:
        raise click.UsageError("speed, interval, qps and duration must be > 0; others >= 0")
    settings = SoakSettings(
        service_file=service_file,
        traces=traces,
        offset_hours=offset_hours,
        speed=speed,
        warning_s=warning,
        cold_start_s=cold_start,
        latency_ms=latency_ms,
        interval_s=interval,
        qps=qps,
        duration_s=duration,
        policy=policy,
        lb_port=lb_port,
        converge_timeout_s=converge_timeout,
        stop_timeout_s=stop_timeout,
    )
    root = Path(tempfile.mkdtemp(prefix="hedgeform-soak-"))
    try:
        run = run_soak(settings, root)
    except (SoakError, SandboxError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_INCOMPLETE) from None
    report = run.report
    click.echo("")
    click.echo(report.table())
    if json_path is not None:
        import json

        json_path.write_text(
            json.dumps(report.to_json(run.samples, run.preempted_at, run.warned_at), indent=1)
        )
        click.echo(f"json: {json_path}")
    if plot is not None and run.samples:
        title = (
            f"hedgeform soak: {settings.qps:g} req/s, speed {settings.speed:g}, "
            f"offset {settings.offset_hours:g} h, interval {settings.interval_s:g} s"
        )
        write_plot(run.samples, run.preempted_at, run.warned_at, plot, title)
        click.echo(f"plot: {plot}")
    if keep or not report.passed:
        click.echo(f"kept for inspection: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    if run.interrupted:
        raise SystemExit(EXIT_INTERRUPTED)
    if not report.completed:
        raise SystemExit(EXIT_INCOMPLETE)
    if not report.passed:
        raise SystemExit(EXIT_TARGET_MISSED)
