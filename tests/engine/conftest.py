"""Engine tests run on the in-memory backend (reconciler.backends.fake): a test that starts
the sandbox's market daemon fails unless it says it drives the real sandbox
(`@pytest.mark.sandbox_daemon`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox import market_daemon
from tests.engine.cloud_fakes import REPO, SENTINEL


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


@pytest.fixture
def mix_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with services/llama-mix-aws.yaml (an any-of set of L4 and A10G on AWS,
    per-type targets) and the repository's modules, the model's token set."""
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    (tmp_path / "services").mkdir()
    name = "llama-mix-aws.yaml"
    shutil.copy(REPO / "services" / name, tmp_path / "services" / name)
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    return tmp_path


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A project root with services/llama.yaml (the sandbox default) and the repository's
    modules; a module that needs another root defines its own `root`. Any market daemon a
    test started there is stopped."""
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    yield tmp_path
    market_daemon.stop(tmp_path / "state" / "llama" / "sandbox")
