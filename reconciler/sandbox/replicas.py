"""Replica processes of the sandbox cloud: launch, stop and list, tracked under the state dir.

Each replica is a daemonized `replica_server` process; `<state_dir>/replicas/<id>.json` holds
its pid, port, zone, market and launch time (written atomically), and `<id>.log` its output.
The process also carries the state dir's `HEDGEFORM_SANDBOX` marker (processes.owned_by), so
`stop` and `stop_all` find a replica whose record was lost (`unrecorded`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import SandboxError
from reconciler.files import write_json_atomic
from reconciler.sandbox import processes
from reconciler.sandbox.statefiles import check_market, check_name, file_lock, read_json

SERVER_MODULE = "reconciler.sandbox.replica_server"
LAUNCH_TIMEOUT_S = 15.0
MAX_RPS = 10_000.0  # the largest simulated throughput `launch` takes (requests/s)


@dataclass(frozen=True)
class ReplicaRecord:
    replica_id: str
    zone: str
    market: str
    pid: int
    port: int
    launched_at: float
    cold_start_s: float
    latency_ms: float
    model: str
    log: str
    version: int = 1  # the service version it runs (policy/rollout.py)
    # Its simulated GPU type's throughput, requests/s (replica_server.ReplicaConfig); 0: none.
    # The load balancer weighs it by this (haproxy.weight_for).
    max_rps: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(raw: dict[str, Any]) -> ReplicaRecord:
        return ReplicaRecord(
            replica_id=str(raw["replica_id"]),
            zone=str(raw["zone"]),
            market=str(raw["market"]),
            pid=int(raw["pid"]),
            port=int(raw["port"]),
            launched_at=float(raw["launched_at"]),
            cold_start_s=float(raw.get("cold_start_s", 0.0)),
            latency_ms=float(raw.get("latency_ms", 0.0)),
            model=str(raw.get("model", "")),
            log=str(raw.get("log", "")),
            version=int(raw.get("version", 1)),
            max_rps=float(raw.get("max_rps", 0.0)),
        )


@dataclass(frozen=True)
class ReplicaStatus:
    record: ReplicaRecord
    alive: bool

    def to_json(self) -> dict[str, Any]:
        return {**self.record.to_json(), "alive": self.alive}


def replicas_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "replicas"


def record_path(state_dir: Path, replica_id: str) -> Path:
    return replicas_dir(state_dir) / f"{check_name(replica_id, 'replica id')}.json"


def markers(replica_id: str) -> list[str]:
    """argv entries that identify this replica's process (guards against recycled pids)."""
    return [SERVER_MODULE, f"--id={replica_id}"]


def get(state_dir: Path, replica_id: str) -> ReplicaRecord | None:
    raw = read_json(record_path(state_dir, replica_id))
    if raw is None:
        return None
    try:
        return ReplicaRecord.from_json(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise SandboxError(f"{record_path(state_dir, replica_id)}: corrupt record ({exc})") from exc


def is_alive(record: ReplicaRecord) -> bool:
    return processes.is_alive(record.pid, markers(record.replica_id))


def _last_log_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return lines[-1].strip()
    return "no output"


def launch(
    state_dir: Path,
    replica_id: str,
    zone: str,
    market: str,
    *,
    cold_start_s: float = 0.0,
    latency_ms: float = 0.0,
    model: str | None = None,
    version: int = 1,
    max_rps: float = 0.0,
) -> ReplicaRecord:
    """Start a replica of service version `version` and return once it listens (it is
    healthy after its cold start).

    Idempotent: launching an id that is already running in the same zone and market returns
    the running replica, so a retried Terraform create does not start a second process.
    """
    state_dir = Path(state_dir)
    check_name(replica_id, "replica id")
    check_name(zone, "zone")
    check_market(market)
    if not (0 <= cold_start_s <= 3_600 and 0 <= latency_ms <= 60_000):  # NaN fails too
        raise SandboxError(
            "cold start must be 0-3600 s and latency 0-60000 ms, "
            f"got {cold_start_s} s and {latency_ms} ms"
        )
    if not 0 <= max_rps <= MAX_RPS:
        raise SandboxError(f"max rps must be 0-{MAX_RPS} requests/s (0: no limit), got {max_rps}")
    if not 1 <= version <= 10**9:
        raise SandboxError(f"version must be 1-1000000000, got {version}")
    rdir = replicas_dir(state_dir)
    with file_lock(rdir / f".{replica_id}.lock"):
        existing = get(state_dir, replica_id)
        if existing is not None and is_alive(existing):
            if (existing.zone, existing.market) != (zone, market):
                raise SandboxError(
                    f"replica {replica_id} is already running in {existing.zone} "
                    f"({existing.market}); stop it first"
                )
            return existing
        for pid, rid in unrecorded(state_dir).items():
            if rid == replica_id:  # a process of this id whose record was lost: replaced
                processes.terminate(pid, markers(replica_id))
        port_file = rdir / f"{replica_id}.port"
        log = rdir / f"{replica_id}.log"
        port_file.unlink(missing_ok=True)
        # Never from the environment: it would put a value the spec may hold secret into the
        # replica's argv (readable by anyone through `ps`). The reconciler passes the public one.
        model_name = model or "sandbox-model"
        argv = processes.python_module_argv(
            SERVER_MODULE,
            f"--id={replica_id}",
            f"--zone={zone}",
            f"--market={market}",
            f"--port-file={port_file}",
            f"--cold-start={cold_start_s}",
            f"--latency-ms={latency_ms}",
            f"--model={model_name}",
            f"--version={version}",
            f"--max-rps={max_rps}",
        )
        launched_at = time.time()
        pid = processes.spawn_daemon(
            argv, log, processes.child_env({"MODEL_NAME": model_name}), owner=state_dir
        )
        record = ReplicaRecord(
            replica_id=replica_id,
            zone=zone,
            market=market,
            pid=pid,
            port=0,
            launched_at=launched_at,
            cold_start_s=cold_start_s,
            latency_ms=latency_ms,
            model=model_name,
            log=str(log),
            version=version,
            max_rps=max_rps,
        )
        # Recorded before it listens, so stop_all finds it even if this launcher dies now.
        write_json_atomic(record_path(state_dir, replica_id), record.to_json())
        port = _wait_for_port(port_file, record)
        record = ReplicaRecord(**{**asdict(record), "port": port})
        write_json_atomic(record_path(state_dir, replica_id), record.to_json())
        port_file.unlink(missing_ok=True)
        return record


def _wait_for_port(port_file: Path, record: ReplicaRecord) -> int:
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(port_file.read_text().strip())
        # Not is_alive(): right after spawn /proc/<pid>/cmdline can still be empty while exec
        # finishes, which is_alive() reads as "not our process" (seen in the soak).
        if processes._exited(record.pid, markers(record.replica_id)) and not port_file.exists():
            reason = _last_log_line(Path(record.log))
            raise SandboxError(f"replica {record.replica_id} exited during launch: {reason}")
        time.sleep(0.02)
    processes.terminate(record.pid, markers(record.replica_id))
    raise SandboxError(
        f"replica {record.replica_id} did not start listening within {LAUNCH_TIMEOUT_S:.0f}s"
    )


def replica_id_of(argv: Sequence[str]) -> str | None:
    """The replica id in a `replica_server` argv (`--id=<id>`), or None for another program."""
    if SERVER_MODULE not in argv:
        return None
    ids = [a.removeprefix("--id=") for a in argv if a.startswith("--id=")]
    return ids[0] if len(ids) == 1 and ids[0] else None


def unrecorded(state_dir: Path) -> dict[int, str]:
    """Replica servers of this state dir (its HEDGEFORM_SANDBOX marker in their environment)
    that no record accounts for: the record is missing, unreadable or names another pid.
    Returns pid -> replica id. Linux /proc only; elsewhere {}."""
    out: dict[int, str] = {}
    for proc in processes.owned_by(state_dir):
        try:
            replica_id = check_name(replica_id_of(proc.argv) or "", "replica id")
        except SandboxError:  # not a replica server, or not one `launch` started
            continue
        try:
            record = get(state_dir, replica_id)
        except SandboxError:
            record = None
        if record is None or record.pid != proc.pid:
            out[proc.pid] = replica_id
    return out


def started_for_another(pid: int, state_dir: Path) -> bool:
    """The replica server `pid` was started for another sandbox directory that still exists
    (its `--port-file`): a record copied with a project names the original's process."""
    origin = processes.sandbox_of(processes.cmdline(pid) or [])
    if origin is None:
        return False
    return Path(origin).resolve() != Path(state_dir).resolve() and Path(origin).exists()


def stop(state_dir: Path, replica_id: str) -> bool:
    """Stop a replica (SIGTERM, then SIGKILL) and forget it: the recorded process, and any
    process of this state dir serving `replica_id` without a record (`unrecorded`).
    Idempotent: returns False when there was nothing running. A corrupt record raises
    SandboxError (nothing is stopped)."""
    state_dir = Path(state_dir)
    path = record_path(state_dir, replica_id)
    with file_lock(replicas_dir(state_dir) / f".{replica_id}.lock"):
        record = get(state_dir, replica_id)
        ended = (
            record is not None
            and not started_for_another(record.pid, state_dir)
            and processes.terminate(record.pid, markers(replica_id))
        )
        for pid, rid in unrecorded(state_dir).items():
            if rid == replica_id:
                ended = processes.terminate(pid, markers(replica_id)) or ended
        path.unlink(missing_ok=True)
        return ended


def list_replicas(state_dir: Path) -> list[ReplicaStatus]:
    """Every recorded replica with its liveness, oldest launch first."""
    rdir = replicas_dir(Path(state_dir))
    if not rdir.is_dir():
        return []
    out: list[ReplicaStatus] = []
    for path in sorted(rdir.glob("*.json")):
        if path.name.startswith("."):
            continue
        record = get(state_dir, path.stem)
        if record is not None:
            out.append(ReplicaStatus(record=record, alive=is_alive(record)))
    out.sort(key=lambda s: (s.record.launched_at, s.record.replica_id))
    return out


def stop_all(state_dir: Path) -> list[str]:
    """Stop every recorded replica and every unrecorded replica process of this state dir
    (`unrecorded`); returns their ids, recorded ones first (oldest launch first)."""
    ids = [s.record.replica_id for s in list_replicas(state_dir)]
    ids += sorted(set(unrecorded(state_dir).values()) - set(ids))
    for replica_id in ids:
        stop(state_dir, replica_id)
    return ids
