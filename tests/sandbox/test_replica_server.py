"""The replica HTTP server: health gated by the cold start, OpenAI-style completions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from reconciler.files import write_json_atomic
from reconciler.sandbox.replica_server import (
    ReplicaConfig,
    ReplicaServer,
    faults_path,
    parse_faults,
)
from tests.sandbox.conftest import serve_in_thread


@pytest.fixture
def cold_server() -> Iterator[ReplicaServer]:
    yield from serve_in_thread(
        ReplicaConfig(
            replica_id="r-cold",
            zone="local-1b",
            market="on_demand",
            model="llama-test",
            cold_start_s=0.4,
            latency_ms=30,
        )
    )


def _url(server: ReplicaServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_health_is_503_during_cold_start_then_200(cold_server: ReplicaServer) -> None:
    assert requests.get(_url(cold_server, "/health"), timeout=5).status_code == 503
    resp = requests.post(_url(cold_server, "/v1/completions"), json={"prompt": "x"}, timeout=5)
    assert resp.status_code == 503
    time.sleep(0.45)
    assert requests.get(_url(cold_server, "/health"), timeout=5).status_code == 200


def test_completion_is_openai_shaped_and_slowed_by_latency(cold_server: ReplicaServer) -> None:
    time.sleep(0.45)
    start = time.perf_counter()
    resp = requests.post(
        _url(cold_server, "/v1/completions"),
        json={"model": "llama-test", "prompt": "hello there", "max_tokens": 4},
        timeout=5,
    )
    elapsed = time.perf_counter() - start
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "text_completion"
    assert body["model"] == "llama-test"
    assert isinstance(body["choices"][0]["text"], str) and body["choices"][0]["text"]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    assert resp.headers["X-Replica-Id"] == "r-cold"
    assert elapsed >= 0.03


def test_models_info_and_request_counts(replica_server: ReplicaServer) -> None:
    models = requests.get(_url(replica_server, "/v1/models"), timeout=5).json()
    assert models["data"][0]["id"] == "sandbox-model"
    for _ in range(3):
        requests.post(_url(replica_server, "/v1/completions"), json={}, timeout=5)
    info = requests.get(_url(replica_server, "/"), timeout=5).json()
    assert info["replica_id"] == "inproc"
    assert (info["zone"], info["market"]) == ("local-1a", "spot")
    assert info["ready"] is True
    assert info["requests"]["completions"] == 3


def test_bad_requests_get_clear_errors(replica_server: ReplicaServer) -> None:
    assert requests.get(_url(replica_server, "/nope"), timeout=5).status_code == 404
    resp = requests.post(_url(replica_server, "/v1/completions"), data=b"{not json", timeout=5)
    assert resp.status_code == 400
    assert "invalid JSON" in resp.json()["error"]["message"]


# ---------------------------------------------------------------- API key, as vLLM


@pytest.fixture
def keyed_server() -> Iterator[ReplicaServer]:
    yield from serve_in_thread(
        ReplicaConfig(replica_id="r-key", zone="local-1a", market="spot", api_key=API_KEY)
    )


API_KEY = "sk-sandbox-0123456789"


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/models"), ("POST", "/v1/completions"), ("GET", "/v1/nope")]
)
@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong", API_KEY, f"Basic {API_KEY}", f"Bearer {API_KEY}x"]
)
def test_v1_routes_need_the_api_key(
    keyed_server: ReplicaServer, method: str, path: str, auth: str | None
) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    resp = requests.request(method, _url(keyed_server, path), headers=headers, json={}, timeout=5)
    assert resp.status_code == 401
    assert resp.json() == {"error": "Unauthorized"}


def test_the_right_key_opens_v1_and_health_stays_open(keyed_server: ReplicaServer) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    assert requests.get(_url(keyed_server, "/v1/models"), headers=auth, timeout=5).ok
    completion = requests.post(
        _url(keyed_server, "/v1/completions"), headers=auth, json={"prompt": "x"}, timeout=5
    )
    assert completion.status_code == 200
    assert requests.get(_url(keyed_server, "/health"), timeout=5).status_code == 200
    assert requests.get(_url(keyed_server, "/"), timeout=5).status_code == 200


def test_the_key_comes_from_the_environment_not_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.sandbox.replica_server import _parse

    monkeypatch.setenv("VLLM_API_KEY", API_KEY)
    config, _ = _parse(["--id", "r1", "--zone", "local-1a", "--market", "spot"])
    assert config.api_key == API_KEY
    assert API_KEY not in repr(config)
    monkeypatch.delenv("VLLM_API_KEY")
    assert _parse(["--id", "r1", "--zone", "local-1a", "--market", "spot"])[0].api_key == ""


def test_without_a_key_v1_is_open(replica_server: ReplicaServer) -> None:
    assert requests.get(_url(replica_server, "/v1/models"), timeout=5).status_code == 200


def test_models_is_a_probe_target_gated_by_the_cold_start(cold_server: ReplicaServer) -> None:
    assert requests.get(_url(cold_server, "/v1/models"), timeout=5).status_code == 503
    time.sleep(0.45)
    assert requests.get(_url(cold_server, "/v1/models"), timeout=5).status_code == 200


# ---------------------------------------------------------------- injected faults


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[ReplicaServer, Path]]:
    path = faults_path(tmp_path / "replicas", "r-faulty")
    config = ReplicaConfig(replica_id="r-faulty", zone="local-1a", market="spot", faults_file=path)
    for server in serve_in_thread(config):
        yield server, path


def test_a_status_fault_answers_the_probe_paths_with_it(
    faulty: tuple[ReplicaServer, Path],
) -> None:
    server, path = faulty
    assert requests.get(_url(server, "/health"), timeout=5).status_code == 200
    write_json_atomic(path, {"status": 500})
    assert requests.get(_url(server, "/health"), timeout=5).status_code == 500
    assert requests.get(_url(server, "/v1/models"), timeout=5).status_code == 500
    resp = requests.post(_url(server, "/v1/completions"), json={}, timeout=5)
    assert resp.status_code == 500
    assert requests.get(_url(server, "/"), timeout=5).status_code == 200  # info stays honest
    path.unlink()
    assert requests.get(_url(server, "/health"), timeout=5).status_code == 200


def test_a_delay_fault_slows_only_the_paths_named(faulty: tuple[ReplicaServer, Path]) -> None:
    server, path = faulty
    write_json_atomic(path, {"delay_ms": 1500, "paths": ["/v1/models"]})
    with pytest.raises(requests.Timeout):
        requests.get(_url(server, "/v1/models"), timeout=0.5)
    assert requests.get(_url(server, "/v1/models"), timeout=5).status_code == 200
    assert requests.get(_url(server, "/health"), timeout=0.5).status_code == 200


def test_a_changed_faults_file_is_picked_up(faulty: tuple[ReplicaServer, Path]) -> None:
    server, path = faulty
    write_json_atomic(path, {"status": 503, "paths": ["/health"]})
    assert requests.get(_url(server, "/health"), timeout=5).status_code == 503
    write_json_atomic(path, {"status": 429, "paths": ["/health"]})
    assert requests.get(_url(server, "/health"), timeout=5).status_code == 429


def test_a_broken_faults_file_is_ignored(faulty: tuple[ReplicaServer, Path]) -> None:
    server, path = faulty
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert requests.get(_url(server, "/health"), timeout=5).status_code == 200
    write_json_atomic(path, {"status": 99})
    assert requests.get(_url(server, "/health"), timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ([], "must be a JSON object"),
        ({"delay": 5}, "unknown field 'delay'"),
        ({"delay_ms": -1}, "delay_ms must be"),
        ({"delay_ms": True}, "delay_ms must be"),
        ({"status": 700}, "status must be an HTTP status"),
        ({"status": 500, "paths": "/health"}, "paths must be a non-empty list"),
        ({"status": 500, "paths": ["health"]}, "paths must be a non-empty list"),
    ],
)
def test_faults_file_rules(raw: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_faults(raw)


def test_faults_default_to_the_probe_paths() -> None:
    faults = parse_faults({"status": 500})
    assert faults.paths == ("/health", "/v1/models", "/v1/completions")
    assert faults.applies_to("/v1/models") and not faults.applies_to("/")
    assert not parse_faults({}).applies_to("/health")  # nothing to inject


def _hang_up_early(port: int) -> None:
    """Ask for a completion and reset the connection before the reply comes (SO_LINGER 0:
    an RST, as HAProxy does when its client went away)."""
    import socket
    import struct

    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_a_client_gone_early_is_one_line_in_the_log_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.sandbox.conftest import serve_in_thread

    config = ReplicaConfig("early", "local-1a", "spot", latency_ms=200)
    servers = serve_in_thread(config)
    server = next(servers)
    port = int(server.server_address[1])
    try:
        for _ in range(3):  # within a second: one line, the others counted in the next
            _hang_up_early(port)
        time.sleep(1.2)
        _hang_up_early(port)
        time.sleep(0.5)
        assert server.state.snapshot().get("client_gone") == 4
    finally:
        servers.close()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("replica early: client 127.0.0.1:") and (
        "closed the connection before the reply was written" in lines[0]
    ), lines
    assert lines[1].endswith("(and 2 more since the last such line)"), lines


def test_a_kept_alive_connection_reset_between_requests_is_not_a_client_gone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """HAProxy and HTTP client pools keep connections open after a reply and may reset them
    later: no request was waiting, so nothing is logged or counted."""
    import socket
    import struct

    from tests.sandbox.conftest import serve_in_thread

    servers = serve_in_thread(ReplicaConfig("kept", "local-1a", "spot"))
    server = next(servers)
    try:
        with socket.create_connection(("127.0.0.1", int(server.server_address[1]))) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.3)
        counts = server.state.snapshot()
    finally:
        servers.close()
    assert counts == {"health": 1}, counts
    assert capsys.readouterr().err == ""
