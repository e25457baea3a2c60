"""The serving check behind `apply` and the loop's hedgeform_endpoint_serving metric."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest

from reconciler.engine.serving import ENDPOINT, LB_HEALTH, ServingChecker, ServingView
from reconciler.spec.model import ReadinessProbe, ServiceSection, ServiceSpec


class FakeCloud:
    def __init__(self, endpoint: str, members: set[str] | None = None) -> None:
        self._endpoint = endpoint
        self.members = members

    def endpoint(self) -> str:
        return self._endpoint

    def lb_members(self) -> set[str] | None:
        return self.members


class Server:
    """A loopback HTTP server answering each request with the next status of a script."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.seen.append((self.command, self.path, dict(self.headers), body))
                status = owner.statuses.pop(0) if len(owner.statuses) > 1 else owner.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = _answer
            do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server([200])
    yield s
    s.close()


def spec(probe: ReadinessProbe, envs: dict[str, str] | None = None) -> ServiceSpec:
    return ServiceSpec("svc", ServiceSection(readiness_probe=probe), envs=envs or {})


def checker(cloud: FakeCloud, s: ServiceSpec, **kw: Any) -> ServingChecker:
    return ServingChecker(cast(ServingView, cloud), s, environ={}, **kw)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serving_means_every_attempt_through_the_endpoint_answered_200(server: Server) -> None:
    check = checker(FakeCloud(server.url), spec(ReadinessProbe(path="/health"))).check()
    assert check.serving and check.via == ENDPOINT
    assert [(m, p) for m, p, _, _ in server.seen] == [("GET", "/health")] * 3


def test_one_failed_attempt_is_not_serving(server: Server) -> None:
    server.statuses[:] = [200, 503, 200]
    check = checker(FakeCloud(server.url), spec(ReadinessProbe(path="/health"))).check()
    assert not check.serving and check.via == ENDPOINT
    assert "HTTP 503" in check.detail


def test_the_probe_method_headers_body_and_variables_are_used(server: Server) -> None:
    probe = ReadinessProbe(
        path="/v1/${KIND}",
        post_data={"prompt": "hi"},
        headers={"Authorization": "Bearer $TOKEN"},
    )
    s = spec(probe, envs={"KIND": "completions", "TOKEN": "sentinel-123"})
    check = checker(FakeCloud(server.url), s, attempts=1).check()
    assert check.serving
    method, path, headers, body = server.seen[0]
    assert (method, path, body) == ("POST", "/v1/completions", b'{"prompt": "hi"}')
    assert headers["Authorization"] == "Bearer sentinel-123"
    assert "sentinel-123" not in check.detail


def test_an_unreachable_endpoint_falls_back_to_the_lb_view_and_says_so_once() -> None:
    cloud = FakeCloud(f"http://127.0.0.1:{closed_port()}", members={"r-1"})
    c = checker(cloud, spec(ReadinessProbe()))
    first, second = c.check(), c.check()
    assert first.serving and first.via == LB_HEALTH and "1 healthy" in first.detail
    assert second.via == LB_HEALTH
    assert len(c.notes) == 1 and "not reachable from this host" in c.notes[0]
    cloud.members = set()
    assert not c.check().serving


def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    cloud = FakeCloud("http://hedgeform-lb.invalid", members=None)
    c = checker(cloud, spec(ReadinessProbe()))
    check = c.check()
    assert not check.serving and check.via == LB_HEALTH and "unknown" in check.detail
    assert "does not resolve" in c.notes[0]


def test_no_endpoint_yet_is_not_serving() -> None:
    c = checker(FakeCloud("(no load balancer applied yet)", members=None), spec(ReadinessProbe()))
    assert not c.check().serving


def test_the_detail_stays_one_line_whatever_a_variable_held(server: Server) -> None:
    server.statuses[:] = [404]
    s = spec(ReadinessProbe(path="/v1/${BAD}"), envs={"BAD": "a b\nc"})
    check = checker(FakeCloud(server.url), s, attempts=1).check()
    assert not check.serving and "\n" not in check.detail and "/v1/a?b?c" in check.detail
