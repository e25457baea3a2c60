"""The replica HTTP server: health gated by the cold start, OpenAI-style completions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from reconciler.sandbox.replica_server import ReplicaConfig, ReplicaServer, make_server


@pytest.fixture
def cold_server() -> Iterator[ReplicaServer]:
    server = make_server(
        ReplicaConfig(
            replica_id="r-cold",
            zone="local-1b",
            market="on_demand",
            model="llama-test",
            cold_start_s=0.4,
            latency_ms=30,
        )
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


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
