"""Fixtures: a real moto server (AWS), and a scriptable HTTP fake (GCP / Azure REST APIs).

Everything listens on 127.0.0.1 only; no test talks to a real cloud.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> None:
    """Fake AWS credentials, and no user config or cloud credentials leaking into tests."""
    empty = tmp_path_factory.mktemp("nocreds")
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "GOOGLE_OAUTH_ACCESS_TOKEN",
        "GOOGLE_CLOUD_PROJECT",
        "CLOUDSDK_CORE_PROJECT",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_SUBSCRIPTION_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(empty / "missing-key.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(empty / "gcloud"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def _moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per call
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_url(_moto_server: str) -> str:
    """The shared moto endpoint. Not reset between tests (re-creating the EC2 backend costs
    seconds per test): tests keep apart by using their own service name (`svc`)."""
    return _moto_server


_COUNTER = itertools.count()


@pytest.fixture
def svc() -> str:
    """A service name no other test uses (queues, tags, load balancers are named after it)."""
    return f"svc{next(_COUNTER)}"


@dataclass
class FakeApi:
    """An HTTP server whose routes are functions of (path, query) -> (status, json[, headers]).

    A route given as a list replays its replies in order (the last one repeats). Every request
    is recorded with its path, query and Authorization header.
    """

    url: str = ""
    routes: dict[str, Callable[[str, dict[str, str]], Reply] | list[Reply]] = field(
        default_factory=dict
    )
    requests: list[tuple[str, dict[str, str], str]] = field(default_factory=list)

    def reply(self, path: str, query: dict[str, str]) -> Reply:
        route = self.routes.get(path)
        if route is None:
            return 404, {"error": {"code": 404, "message": f"no route {path}"}}
        if isinstance(route, list):
            return route.pop(0) if len(route) > 1 else route[0]
        return route(path, query)

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.requests]


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            api.requests.append((parts.path, query, self.headers.get("Authorization", "")))
            answer = api.reply(parts.path, query)
            status, body = answer[0], answer[1]
            headers = answer[2] if len(answer) > 2 else {}  # type: ignore[misc]
            payload = json.dumps(body).encode() if not isinstance(body, bytes) else body
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
