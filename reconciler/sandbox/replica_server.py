"""A sandbox replica: a tiny OpenAI-compatible HTTP server standing in for a model server.

It is unhealthy (503 on /health) until its cold start has elapsed, like a GPU replica loading
weights, and answers completions after a configurable latency. Run as
`python -m reconciler.sandbox.replica_server --id r1 --zone local-1a --market spot`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from reconciler.sandbox.statefiles import check_market, check_name

DEFAULT_MODEL = "sandbox-model"
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class ReplicaConfig:
    replica_id: str
    zone: str
    market: str
    model: str = DEFAULT_MODEL
    cold_start_s: float = 0.0
    latency_ms: float = 0.0
    host: str = "127.0.0.1"
    port: int = 0


@dataclass
class ReplicaState:
    """What the handlers share: start time and request counters (guarded by a lock)."""

    config: ReplicaConfig
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, key: str) -> int:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            return self.counts[key]

    def ready(self) -> bool:
        return time.monotonic() - self.started >= self.config.cold_start_s

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)


class ReplicaServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: ReplicaState) -> None:
        self.state = state
        super().__init__((state.config.host, state.config.port), ReplicaHandler)


class ReplicaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ReplicaServer

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
            "pid": os.getpid(),
            "ready": state.ready(),
            "uptime_s": round(time.monotonic() - state.started, 3),
            "requests": state.snapshot(),
        }

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        if path == "/health":
            state.count("health")
            if state.ready():
                self._send_json(200, {"status": "ok"})
            else:
                self._send_json(503, {"status": "starting"})
        elif path == "/v1/models":
            state.count("models")
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
        if state.config.latency_ms > 0:
            time.sleep(state.config.latency_ms / 1000.0)
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
    return ReplicaServer(ReplicaState(config))


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
    parser.add_argument("--cold-start", type=float, default=float(env.get("COLD_START_S", 0)))
    parser.add_argument("--latency-ms", type=float, default=float(env.get("LATENCY_MS", 0)))
    ns = parser.parse_args(argv)
    config = ReplicaConfig(
        replica_id=check_name(ns.id, "replica id"),
        zone=check_name(ns.zone, "zone"),
        market=check_market(ns.market),
        model=ns.model,
        cold_start_s=max(0.0, ns.cold_start),
        latency_ms=max(0.0, ns.latency_ms),
        host=ns.host,
        port=ns.port,
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
        tmp = port_file.with_name(port_file.name + ".tmp")
        tmp.write_text(str(port))
        os.replace(tmp, port_file)
    print(
        f"replica {config.replica_id} ({config.zone}, {config.market}) serving "
        f"{config.model} on {config.host}:{port}; cold start {config.cold_start_s}s",
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
