"""A sandbox replica: a tiny OpenAI-compatible HTTP server standing in for a model server.

It is unhealthy (503 on /health, /v1/models and /v1/completions) until its cold start has
elapsed, like a GPU replica loading weights, and answers completions after a configurable
latency. Run as `python -m reconciler.sandbox.replica_server --id r1 --zone local-1a --market
spot`.

To play the readiness-probe scenarios of a real model server:
- API key, as vLLM: when `VLLM_API_KEY` is set in its environment (replicas inherit the
  reconciler's; never pass it in argv), every `/v1/*` route needs `Authorization: Bearer <key>`
  and answers 401 otherwise; `/health` and `/` stay open, as in vLLM.
- Faults, for tests and demos: the JSON file `<sandbox>/replicas/faults/<id>.json` (written by
  `hedgeform sandbox replica fault`; see `Faults`) makes the replica answer its probe paths
  late or with an error status. It is re-read when its mtime or size changes (one stat per
  request), so a fault takes effect on the next request and `--clear` ends it.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from reconciler.files import write_atomic
from reconciler.sandbox.statefiles import check_market, check_name

DEFAULT_MODEL = "sandbox-model"
MAX_BODY_BYTES = 1 << 20
API_KEY_ENV = "VLLM_API_KEY"  # vLLM's variable (or its --api-key): Bearer auth on /v1/*
# The routes a readiness probe can target; faults apply to these unless the file names others.
PROBE_PATHS = ("/health", "/v1/models", "/v1/completions")
MAX_FAULT_DELAY_MS = 600_000


@dataclass(frozen=True)
class Faults:
    """An injected fault: answer `paths` after `delay_ms` milliseconds, and/or with HTTP
    `status` instead of the real answer. File form: `{"delay_ms": 2500, "paths":
    ["/v1/models"]}`, `{"status": 500}`; `paths` defaults to PROBE_PATHS."""

    delay_ms: int = 0
    status: int | None = None
    paths: tuple[str, ...] = PROBE_PATHS

    def applies_to(self, path: str) -> bool:
        return (self.delay_ms > 0 or self.status is not None) and path in self.paths

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"paths": list(self.paths)}
        if self.delay_ms:
            out["delay_ms"] = self.delay_ms
        if self.status is not None:
            out["status"] = self.status
        return out


NO_FAULTS = Faults()


def parse_faults(raw: object) -> Faults:
    """A faults file's content as Faults; ValueError saying what is wrong, in one line."""
    if not isinstance(raw, Mapping):
        raise ValueError('must be a JSON object like {"delay_ms": 2500} or {"status": 500}')
    unknown = sorted(set(raw) - {"delay_ms", "status", "paths"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; allowed: delay_ms, status, paths")
    delay = raw.get("delay_ms", 0)
    if not _whole(delay) or not 0 <= delay <= MAX_FAULT_DELAY_MS:
        raise ValueError(f"delay_ms must be a whole number 0-{MAX_FAULT_DELAY_MS}, got {delay!r}")
    status = raw.get("status")
    if status is not None and (not _whole(status) or not 100 <= status <= 599):
        raise ValueError(f"status must be an HTTP status 100-599, got {status!r}")
    paths = raw.get("paths", list(PROBE_PATHS))
    if (
        not isinstance(paths, list)
        or not paths
        or not all(isinstance(p, str) and p.startswith("/") for p in paths)
    ):
        raise ValueError("paths must be a non-empty list of paths starting with '/'")
    return Faults(int(delay), None if status is None else int(status), tuple(paths))


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def faults_path(replicas_dir: Path, replica_id: str) -> Path:
    """`<replicas_dir>/faults/<id>.json`: a subfolder, because every `*.json` directly in the
    replicas folder is read as a replica record."""
    return Path(replicas_dir) / "faults" / f"{check_name(replica_id, 'replica id')}.json"


@dataclass(frozen=True)
class ReplicaConfig:
    replica_id: str
    zone: str
    market: str
    model: str = DEFAULT_MODEL
    version: int = 1  # the service version it runs (policy/rollout.py)
    cold_start_s: float = 0.0
    latency_ms: float = 0.0
    # The GPU type's throughput (issue 15): completions are served one after another, each
    # taking 1/max_rps s, so latency grows with the queue once the offered rate nears it.
    # 0: no limit (every request takes `latency_ms`, in parallel).
    max_rps: float = 0.0
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str = field(default="", repr=False)  # "" means no auth; never printed
    faults_file: Path | None = None


@dataclass
class ServerState:
    """What the handlers share: start time, request counters and the faults file's last
    reading (both guarded by a lock)."""

    config: ReplicaConfig
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=dict)
    _faults_seen: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) last read
    _faults: Faults = NO_FAULTS
    _free_at: float = 0.0  # monotonic time the simulated GPU finishes its queued work

    def serve_slot(self) -> float:
        """Seconds this completion waits for the simulated GPU and is served
        (`ReplicaConfig.max_rps`): FIFO behind the requests already queued, then 1/max_rps."""
        rate = self.config.max_rps
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        with self.lock:
            start = max(now, self._free_at)
            self._free_at = start + 1.0 / rate
            return self._free_at - now

    def faults(self) -> Faults:
        """The faults in effect: one stat per call, a re-read only when the file changed."""
        path = self.config.faults_file
        if path is None:
            return NO_FAULTS
        try:
            st = os.stat(path)
        except OSError:
            with self.lock:
                self._faults_seen, self._faults = None, NO_FAULTS
            return NO_FAULTS
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self.lock:
            if key == self._faults_seen:
                return self._faults
        try:
            faults = parse_faults(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            print(f"replica {self.config.replica_id}: ignoring {path}: {exc}", flush=True)
            faults = NO_FAULTS
        with self.lock:
            self._faults_seen, self._faults = key, faults
        return faults

    def count(self, key: str) -> int:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]

    def ready(self) -> bool:
        return time.monotonic() - self.started >= self.config.cold_start_s

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)


# A client (HAProxy, a load generator, curl) that closes its connection before the reply is
# written: ordinary under load, not a replica bug. Said in one line, never as a traceback.
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
CLIENT_GONE_EVERY_S = 1.0  # at most one such line a second; the others are counted in it


class ReplicaServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._gone_said_at = -CLIENT_GONE_EVERY_S
        self._gone_unsaid = 0
        super().__init__((state.config.host, state.config.port), ReplicaHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone early (`CLIENT_GONE`) is one line in the replica's log, counted as
        `client_gone` in `/`'s requests; at most one line per `CLIENT_GONE_EVERY_S`, saying
        how many since the last. Any other error keeps socketserver's traceback (a bug)."""
        error = sys.exc_info()[1]
        if not isinstance(error, CLIENT_GONE):
            super().handle_error(request, client_address)
            return
        self.state.count("client_gone")
        now = time.monotonic()
        with self.state.lock:
            if now - self._gone_said_at < CLIENT_GONE_EVERY_S:
                self._gone_unsaid += 1
                return
            more, self._gone_unsaid, self._gone_said_at = self._gone_unsaid, 0, now
        address = client_address if isinstance(client_address, tuple) else (client_address,)
        host, port = (*address, "?", "?")[:2]
        also = f" (and {more} more since the last such line)" if more else ""
        print(
            f"replica {self.state.config.replica_id}: client {host}:{port} closed the "
            f"connection before the reply was written ({type(error).__name__}){also}",
            file=sys.stderr,
            flush=True,
        )


class ReplicaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ReplicaServer
    # A buffered writer, flushed once per request by BaseHTTPRequestHandler: the status line,
    # headers and body leave in one write. Unbuffered (socketserver's default), the headers
    # went out first, and HAProxy's health check, which resets the connection (RST) as soon as
    # it has the status, made the body's write fail: a `closed the connection` line in every
    # idle replica's log every other second.
    wbufsize = 64 * 1024
    _between_requests = True  # waiting for a request line: nothing asked, nothing owed

    def handle(self) -> None:
        """A keep-alive connection reset while it waits for its next request (HAProxy
        dropping an idle server connection, a client's pool closing) lost nothing: it ends
        quietly, neither logged nor counted as a client gone before its reply."""
        try:
            super().handle()
        except CLIENT_GONE:
            if not self._between_requests:
                raise

    def handle_one_request(self) -> None:
        self._between_requests = True
        super().handle_one_request()

    def parse_request(self) -> bool:
        self._between_requests = False  # a request line was read: a reply is owed
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        """Per-request access logs would flood the replica log under load; counts are in `/`."""

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Replica-Id", self.server.state.config.replica_id)
        self.end_headers()
        self.wfile.write(payload)

    def _info(self) -> dict[str, Any]:
        state = self.server.state
        cfg = state.config
        return {
            "replica_id": cfg.replica_id,
            "zone": cfg.zone,
            "market": cfg.market,
            "model": cfg.model,
            "version": cfg.version,
            "pid": os.getpid(),
            "ready": state.ready(),
            "uptime_s": round(time.monotonic() - state.started, 3),
            "requests": state.snapshot(),
        }

    def _intercepted(self, path: str) -> bool:
        """Faults and auth, before the route: a delay first (a hung server delays everything),
        then the API key check on /v1/* (vLLM's middleware), then an injected status.
        True when a response was already sent."""
        faults = self.server.state.faults()
        hit = faults.applies_to(path)
        if hit and faults.delay_ms:
            time.sleep(faults.delay_ms / 1000.0)
        key = self.server.state.config.api_key
        if key and path.startswith("/v1") and not self._authorized(key):
            self.server.state.count("unauthorized")
            self._send_json(401, {"error": "Unauthorized"})
            return True
        if hit and faults.status is not None:
            self.server.state.count("faulted")
            self._send_json(faults.status, {"error": {"message": "injected fault"}})
            return True
        return False

    def _authorized(self, key: str) -> bool:
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {key}".encode())

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        if self._intercepted(path):
            return
        if path == "/health":
            state.count("health")
            if state.ready():
                self._send_json(200, {"status": "ok"})
            else:
                self._send_json(503, {"status": "starting"})
        elif path == "/v1/models":
            state.count("models")
            if not state.ready():  # vLLM serves nothing before the model is loaded
                self._send_json(503, {"error": {"message": "replica is still starting"}})
                return
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": state.config.model, "object": "model", "owned_by": "sandbox"}],
                },
            )
        elif path == "/":
            self._send_json(200, self._info())
        else:
            self._send_json(404, {"error": {"message": f"no route for GET {path}"}})

    def do_POST(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, {"error": {"message": "request body too large"}})
            return
        raw = self.rfile.read(length) if length else b""
        if self._intercepted(path):
            return
        if path != "/v1/completions":
            self._send_json(404, {"error": {"message": f"no route for POST {path}"}})
            return
        if not state.ready():
            state.count("completions_rejected")
            self._send_json(503, {"error": {"message": "replica is still starting"}})
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as exc:
            self._send_json(400, {"error": {"message": f"invalid JSON body: {exc}"}})
            return
        n = state.count("completions")
        wait_s = state.config.latency_ms / 1000.0 + state.serve_slot()
        if wait_s > 0:
            time.sleep(wait_s)
        prompt = str(body.get("prompt", ""))
        max_tokens = body.get("max_tokens", 16)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            max_tokens = 16
        max_tokens = min(max_tokens, 256)
        words = [f"tok{i}" for i in range(max_tokens)]
        prompt_tokens = len(prompt.split())
        self._send_json(
            200,
            {
                "id": f"cmpl-{state.config.replica_id}-{n}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": state.config.model,
                "choices": [
                    {
                        "index": 0,
                        "text": " ".join(words),
                        "logprobs": None,
                        "finish_reason": "length",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": max_tokens,
                    "total_tokens": prompt_tokens + max_tokens,
                },
            },
        )


def make_server(config: ReplicaConfig) -> ReplicaServer:
    """Bind (port 0 picks a free port) and return the server; the caller runs serve_forever."""
    return ReplicaServer(ServerState(config))


def _parse(argv: list[str] | None) -> tuple[ReplicaConfig, Path | None]:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--id", required=True, help="replica id")
    parser.add_argument("--zone", required=True)
    parser.add_argument("--market", required=True, choices=["spot", "on_demand"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the bound port here when ready")
    parser.add_argument("--model", default=env.get("MODEL_NAME", DEFAULT_MODEL))
    parser.add_argument("--version", type=int, default=1, help="service version it runs")
    parser.add_argument("--cold-start", type=float, default=float(env.get("COLD_START_S", 0)))
    parser.add_argument("--latency-ms", type=float, default=float(env.get("LATENCY_MS", 0)))
    parser.add_argument(
        "--max-rps",
        type=float,
        default=0.0,
        help="completions/s the simulated GPU serves, one after another (0: no limit)",
    )
    parser.add_argument(
        "--faults-file",
        type=Path,
        help="faults JSON to honour (default: faults/<id>.json beside --port-file)",
    )
    ns = parser.parse_args(argv)
    faults_file = ns.faults_file
    if faults_file is None and ns.port_file is not None:
        faults_file = faults_path(ns.port_file.parent, ns.id)
    config = ReplicaConfig(
        replica_id=check_name(ns.id, "replica id"),
        zone=check_name(ns.zone, "zone"),
        market=check_market(ns.market),
        model=ns.model,
        version=max(1, ns.version),
        cold_start_s=max(0.0, ns.cold_start),
        latency_ms=max(0.0, ns.latency_ms),
        max_rps=max(0.0, ns.max_rps),
        host=ns.host,
        port=ns.port,
        api_key=env.get(API_KEY_ENV, ""),  # from the environment only, never argv
        faults_file=faults_file,
    )
    return config, ns.port_file


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    config, port_file = _parse(argv)
    server = make_server(config)
    port = int(server.server_address[1])
    signal.signal(signal.SIGTERM, _stop)
    if port_file is not None:
        write_atomic(port_file, str(port))
    auth = f"; /v1/* needs the key in ${API_KEY_ENV}" if config.api_key else ""
    print(
        f"replica {config.replica_id} ({config.zone}, {config.market}) serving "
        f"{config.model} on {config.host}:{port}; cold start {config.cold_start_s}s{auth}",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
        print(f"replica {config.replica_id} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
