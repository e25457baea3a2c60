"""Engine tests run on the in-memory backend (reconciler.backends.fake): a test that starts
the sandbox's market daemon fails unless it says it drives the real sandbox
(`@pytest.mark.sandbox_daemon`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.sandbox import market_daemon


@pytest.fixture(autouse=True)
def no_market_daemon(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("sandbox_daemon"):
        return

    def refuse(state_dir: Path, *args: object, **kwargs: object) -> None:
        raise AssertionError(
            "an engine test started the sandbox's market daemon: use FakeBackend "
            "(reconciler.backends.fake) or mark the test sandbox_daemon"
        )

    monkeypatch.setattr(market_daemon, "start", refuse)
