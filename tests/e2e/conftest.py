"""A throwaway project root for end-to-end runs on the local sandbox cloud.

The root links the repository's Terraform modules and pinned tools and holds its own
`services/` and `state/`, so a test never touches the developer's state.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.paths import ServicePaths
from reconciler.sandbox import market_daemon, replicas
from reconciler.sandbox.haproxy import HAProxyLB

REPO = Path(__file__).resolve().parents[2]
# The three sandbox zones (two regions), as a spec's `resources` section.
SANDBOX_ZONES = """\
resources:
  any_of:
    - {cloud: local, region: local-1, zone: local-1a}
    - {cloud: local, region: local-1, zone: local-1b}
    - {cloud: local, region: local-2, zone: local-2a}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sandbox_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (make setup installs it when run as root)")
    if not (REPO / ".tools" / "bin" / "terraform").exists():
        pytest.skip("the pinned Terraform is not installed: run make setup")
    root = tmp_path_factory.mktemp("root")
    (root / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", root / "services" / "llama.yaml")
    (root / "terraform").symlink_to(REPO / "terraform")
    (root / ".tools").symlink_to(REPO / ".tools")
    yield root
    sandbox = root / "state" / "llama" / "sandbox"
    if sandbox.exists():  # whatever a failed test left behind
        replicas.stop_all(sandbox)
        HAProxyLB(sandbox).down()
        market_daemon.stop(sandbox)


@contextlib.contextmanager
def project_root(path: Path, services: dict[str, str]) -> Iterator[Path]:
    """A throwaway project root at `path` with these service files (name -> YAML), the
    repository's modules and tools linked in; afterwards, every sandbox process of those
    services is stopped (a SIGSTOPped replica is woken first so it can die). Skips the test
    when HAProxy or the pinned Terraform is missing."""
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (make setup installs it when run as root)")
    if not (REPO / ".tools" / "bin" / "terraform").exists():
        pytest.skip("the pinned Terraform is not installed: run make setup")
    (path / "services").mkdir(parents=True, exist_ok=True)
    for name, text in services.items():
        (path / "services" / f"{name}.yaml").write_text(text)
    (path / "terraform").symlink_to(REPO / "terraform")
    (path / ".tools").symlink_to(REPO / ".tools")
    try:
        yield path
    finally:
        for name in services:
            sandbox = path / "state" / name / "sandbox"
            if not sandbox.exists():
                continue
            for status in replicas.list_replicas(sandbox):
                if status.alive:
                    with contextlib.suppress(OSError):
                        os.kill(status.record.pid, signal.SIGCONT)
            replicas.stop_all(sandbox)
            HAProxyLB(sandbox).down()
            market_daemon.stop(sandbox)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for a project root: HAProxy's admin socket path must fit in 97
    bytes, and pytest's tmp_path (its run counter grows on a machine that ran pytest many
    times) plus a test's name may not leave room for `state/<service>/sandbox/haproxy.sock`."""
    path = Path(tempfile.mkdtemp(prefix="hfe-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


THREE_REPLICAS = (
    """\
service:
  readiness_probe: /health
  replica_policy:
    min_replicas: 3
    max_replicas: 3
"""
    + SANDBOX_ZONES
)


def fast_sandbox_env() -> dict[str, str]:
    """A free load balancer port, 1 s cold starts and 5 ms of replica latency."""
    return {
        "HEDGEFORM_LB_PORT": str(free_port()),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
        "HEDGEFORM_SANDBOX_LATENCY_MS": "5",
    }


@contextlib.contextmanager
def applied(tmp_path: Path, service: str, env: dict[str, str]) -> Iterator[ServicePaths]:
    """A project root at `tmp_path` holding `service` (THREE_REPLICAS), applied until it
    serves; its processes are stopped afterwards (`project_root`)."""
    from click.testing import CliRunner

    from reconciler.cli import main

    with project_root(tmp_path, {service: THREE_REPLICAS}) as root:
        done = CliRunner().invoke(main, ["apply", service, "--root", str(root)], env=env)
        assert done.exit_code == 0, done.output
        yield ServicePaths.for_service(service, root=root)


def hedgeform_keeping_signals(root: Path, env: dict[str, str], *args: str) -> str:
    """`hedgeform ARGS --root ROOT` in-process, its output; exit 0 asserted. `run` installs
    its own SIGINT/SIGTERM handlers: pytest gets its own back afterwards."""
    from click.testing import CliRunner

    from reconciler.cli import main

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = CliRunner().invoke(main, [*args, "--root", str(root)], env=env)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert result.exit_code == 0, result.output
    return result.output
