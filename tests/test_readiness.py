"""The readiness prober: what it sends (substitution, method, headers, body), how long it waits
(exactly timeout_seconds), what it reports, and that no secret ever shows in its output."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.readiness import (
    ProbeRequest,
    probe,
    probe_request,
    spec_probe_request,
    substitute,
)
from reconciler.spec import ReadinessProbe, parse_spec

SECRET = "hf_SECRET_0123456789abcdef"


# ---------------------------------------------------------------- a recording HTTP server


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """What the test server does and what it saw."""

    status: int = 200
    delay_s: float = 0.0
    seen: list[Seen] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rec = self.server.recorder
        rec.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
        if rec.delay_s:
            time.sleep(rec.delay_s)
        payload = b'{"ok": true}'
        self.send_response(rec.status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        super().__init__(("127.0.0.1", 0), _Handler)


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    httpd = _Server(recorder)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", recorder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- substitution (pure)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/v1/${KIND}", "/v1/models"),
        ("/v1/$KIND", "/v1/models"),
        ("Bearer ${TOKEN}", "Bearer from-env"),
        ("$KIND-$TOKEN", "models-from-env"),
        ("/v1/$KINDS", "/v1/$KINDS"),  # a longer name is another (unknown) variable
        ("/v1/${NOPE}/$NOPE", "/v1/${NOPE}/$NOPE"),  # unknown: left as written
        ("${KIND", "${KIND"),  # not one of the two forms
        ("$1 and $$", "$1 and $$"),
        ("${SHARED}", "from-spec"),  # envs win over the environment
    ],
)
def test_substitution_rules(text: str, expected: str) -> None:
    envs = {"KIND": "models", "SHARED": "from-spec"}
    environ = {"TOKEN": "from-env", "SHARED": "from-environ"}
    assert substitute(text, envs, environ) == expected


def test_unknown_variables_are_left_as_expandvars_leaves_them() -> None:
    import posixpath

    text = "/a/$UNSET_HF_X/${UNSET_HF_Y}"
    assert substitute(text, {}, {}) == posixpath.expandvars(text) == text


def test_the_issue_example_probes_v1_models() -> None:
    doc = {
        "service": {"readiness_probe": {"path": "/v1/${KIND}"}, "replicas": 1},
        "resources": {"cloud": "local"},
        "envs": {"KIND": "models"},
        "run": "serve",
    }
    spec = parse_spec(doc, name="svc", source="svc.yaml")
    assert spec_probe_request(spec, {}).path == "/v1/models"


def test_null_envs_come_from_the_environment_not_their_placeholder() -> None:
    doc = {
        "service": {
            "readiness_probe": {"path": "/h", "headers": {"Authorization": "Bearer ${KEY}"}},
            "replicas": 1,
        },
        "resources": {"cloud": "local"},
        "envs": {"KEY": None},
        "run": "serve",
    }
    spec = parse_spec(doc, name="svc", source="svc.yaml")
    assert spec_probe_request(spec, {"KEY": SECRET}).headers["Authorization"] == f"Bearer {SECRET}"
    # Unset in the environment too: left as written (the replica will answer 401, not "").
    assert spec_probe_request(spec, {}).headers["Authorization"] == "Bearer ${KEY}"


def test_post_data_is_substituted_recursively_and_sent_as_post() -> None:
    probe_spec = ReadinessProbe(
        path="/v1/completions",
        post_data={
            "model": "$MODEL",
            "messages": [{"role": "user", "content": "hi ${WHO}"}],
            "max_tokens": 1,
            "stream": False,
        },
        timeout_seconds=7,
    )
    request = probe_request(probe_spec, {"MODEL": "llama"}, {"WHO": "there"})
    assert request.method == "POST"
    assert request.body == {
        "model": "llama",
        "messages": [{"role": "user", "content": "hi there"}],
        "max_tokens": 1,
        "stream": False,
    }
    assert request.timeout_s == 7.0


def test_a_string_post_data_is_json_and_substituted_after_parsing() -> None:
    text = '{"model": "$MODEL", "note": "say \\"$WORD\\""}'
    request = probe_request(ReadinessProbe(post_data=text), {"MODEL": 'a"b', "WORD": "hi"}, {})
    # A value with a quote cannot break the JSON: it is substituted into parsed strings.
    assert request.body == {"model": 'a"b', "note": 'say "hi"'}
    assert probe_request(ReadinessProbe(post_data="null"), {}, {}).method == "GET"  # as SkyServe
    with pytest.raises(ValueError, match="post_data") as caught:
        probe_request(ReadinessProbe(post_data=f"{{{SECRET}"), {}, {})
    assert SECRET not in str(caught.value)


def test_no_post_data_means_get_without_a_body() -> None:
    request = probe_request(ReadinessProbe(path="/health"), {}, {})
    assert (request.method, request.body, request.timeout_s) == ("GET", None, 15.0)


_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_VALUE = st.text(
    st.characters(blacklist_characters="${}", blacklist_categories=("Cs",)), max_size=8
)


@settings(max_examples=500)
@given(
    envs=st.dictionaries(_NAME, _VALUE, min_size=1, max_size=5),
    pieces=st.lists(
        st.one_of(st.text(max_size=6), _NAME.map(lambda n: "${" + n + "}")), max_size=8
    ),
    data=st.data(),
)
def test_property_no_reference_to_a_known_name_survives(
    envs: dict[str, str], pieces: list[str], data: st.DataObject
) -> None:
    """Whatever surrounds them, `${NAME}` for every NAME in envs is gone after substitution.
    Values are drawn without `$`, `{` and `}`: substitution is one pass, so a value holding a
    reference, or completing one with the text beside it, is left as it comes out."""
    known = data.draw(st.lists(st.sampled_from(sorted(envs)), max_size=4))
    text = "".join(pieces + ["${" + name + "}" for name in known])
    out = substitute(text, envs, {})
    for name in envs:
        assert "${" + name + "}" not in out


# ---------------------------------------------------------------- sending (I/O)


def test_get_sends_the_substituted_path_and_headers(server: tuple[str, Recorder]) -> None:
    url, rec = server
    probe_spec = ReadinessProbe(
        path="/v1/${KIND}", headers={"Authorization": "Bearer ${TOKEN}", "X-Probe": "hf"}
    )
    result = probe(url, probe_request(probe_spec, {"KIND": "models"}, {"TOKEN": SECRET}))
    assert (result.ok, result.status, result.reachable, result.reason) == (
        True,
        200,
        True,
        "HTTP 200",
    )
    (seen,) = rec.seen
    assert (seen.method, seen.path, seen.body) == ("GET", "/v1/models", b"")
    assert seen.headers["Authorization"] == f"Bearer {SECRET}"
    assert seen.headers["X-Probe"] == "hf"


def test_post_sends_the_json_body(server: tuple[str, Recorder]) -> None:
    url, rec = server
    probe_spec = ReadinessProbe(path="/v1/completions", post_data={"model": "$M", "n": [1, 2]})
    assert probe(url, probe_request(probe_spec, {"M": "llama"}, {})).ok
    (seen,) = rec.seen
    assert seen.method == "POST"
    assert json.loads(seen.body) == {"model": "llama", "n": [1, 2]}
    assert seen.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("status", [201, 204, 301, 401, 503])
def test_only_http_200_is_ready(server: tuple[str, Recorder], status: int) -> None:
    url, rec = server
    rec.status = status
    result = probe(url, ProbeRequest("GET", "/health", timeout_s=5))
    assert (result.ok, result.status, result.reachable) == (False, status, True)
    assert result.reason == f"HTTP {status}"


def test_the_exact_timeout_is_honoured(server: tuple[str, Recorder]) -> None:
    """A replica that answers in 1.5 s passes with timeout_seconds 3 and fails with 1 (the old
    sandbox capped every probe at 1 s, so a 3 s timeout could never pass)."""
    url, rec = server
    rec.delay_s = 1.5
    patient = probe(url, probe_request(ReadinessProbe(path="/slow", timeout_seconds=3), {}, {}))
    assert patient.ok and patient.status == 200
    hasty = probe(url, probe_request(ReadinessProbe(path="/slow", timeout_seconds=1), {}, {}))
    assert (hasty.ok, hasty.status, hasty.reachable) == (False, None, False)
    assert hasty.reason == "timed out after 1 s"


def test_a_refused_connection_is_unreachable() -> None:
    result = probe(f"http://127.0.0.1:{closed_port()}", ProbeRequest("GET", "/health"))
    assert (result.ok, result.status, result.reachable) == (False, None, False)
    assert result.reason == "connection refused"


def test_an_unresolvable_host_is_unreachable() -> None:
    result = probe("http://replica.invalid:8081", ProbeRequest("GET", "/health", timeout_s=5))
    assert (result.ok, result.reachable) == (False, False)
    assert result.reason in ("name not resolved", "connection failed")


# ---------------------------------------------------------------- secrets stay out


def test_repr_redacts_header_values_and_the_body() -> None:
    probe_spec = ReadinessProbe(
        path="/v1/completions",
        headers={"Authorization": "Bearer ${TOKEN}"},
        post_data={"api_key": "$TOKEN"},
    )
    request = probe_request(probe_spec, {}, {"TOKEN": SECRET})
    assert request.headers["Authorization"] == f"Bearer {SECRET}"  # sent...
    for text in (repr(request), str(request), f"{request}", repr([request])):
        assert SECRET not in text  # ...never shown
        assert "Authorization" in text and "POST" in text


def test_reasons_never_hold_header_values_or_the_body(server: tuple[str, Recorder]) -> None:
    url, rec = server
    probe_spec = ReadinessProbe(
        path="/p", headers={"Authorization": f"Bearer {SECRET}"}, post_data={"k": SECRET}
    )
    request = probe_request(probe_spec, {}, {})
    results = []
    for status in (200, 500):
        rec.status = status
        results.append(probe(url, request))
    results.append(probe(f"http://127.0.0.1:{closed_port()}", request))
    bad_header = ProbeRequest("GET", "/p", headers={"X-Key": f"{SECRET}\r\nX-Injected: 1"})
    results.append(probe(url, bad_header))
    assert [r.ok for r in results] == [True, False, False, False]
    assert results[-1].reason.startswith("request failed")
    for result in results:
        assert SECRET not in result.reason and SECRET not in repr(result)


def test_a_header_value_http_cannot_carry_is_a_failed_probe_not_an_exception() -> None:
    """A value substituted from the environment may be non-Latin-1 (the spec refuses such a
    literal); the probe fails with a reason that does not quote it."""
    request = ProbeRequest("GET", "/health", headers={"X-U": "日本語"}, timeout_s=1)
    result = probe("http://127.0.0.1:9", request)
    assert not result.ok and "日本語" not in result.reason
