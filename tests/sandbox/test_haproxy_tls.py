"""The sandbox's HAProxy serving `service.tls` (issue 17, item 5): HTTPS with the given pair,
a renewed pair swapped in without a restart, and the private key in exactly one 0600 file."""

from __future__ import annotations

import hashlib
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reconciler.errors import SandboxError
from reconciler.readiness import pinned_session, presented_certificate_problem
from reconciler.sandbox import processes, replicas
from reconciler.sandbox.cli import sandbox
from reconciler.sandbox.haproxy import HAProxyLB, render_config
from reconciler.spec.model import TLSFiles
from reconciler.spec.tls import leaf_certificate
from tests.e2e.conftest import free_port
from tests.sandbox.conftest import requires_haproxy
from tests.tlsfiles import Pair, make_pair, presented

pytestmark = requires_haproxy


def _files(pair: Pair) -> TLSFiles:
    return TLSFiles(keyfile=str(pair.keyfile), certfile=str(pair.certfile))


def _der(pair: Pair) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pair.certfile.read_text())


@pytest.fixture
def pairs(tmp_path: Path) -> tuple[Pair, Pair]:
    return make_pair(tmp_path / "one", "a"), make_pair(tmp_path / "two", "b")


@pytest.fixture
def tls_lb(state_dir: Path, pairs: tuple[Pair, Pair]) -> Iterator[HAProxyLB]:
    lb = HAProxyLB(state_dir, free_port(), tls=_files(pairs[0]))
    lb.up()
    yield lb
    lb.down()


def test_the_config_binds_with_the_certificate_file_and_holds_no_key(tmp_path: Path) -> None:
    pem = tmp_path / "endpoint.pem"
    text = render_config(18099, tmp_path / "s.sock", pem=pem)
    assert f"bind 127.0.0.1:18099 ssl crt {pem}\n" in text
    assert "ssl" not in render_config(18099, tmp_path / "s.sock")


def test_https_is_served_with_the_given_certificate_and_plain_http_is_not(
    tls_lb: HAProxyLB, pairs: tuple[Pair, Pair]
) -> None:
    url = f"https://127.0.0.1:{tls_lb.port}/"
    # Verified against the given certificate (no member yet: HAProxy's own 503).
    with pinned_session(str(pairs[0].certfile)) as session:
        assert session.get(url, timeout=5).status_code == 503
    with pytest.raises(requests.exceptions.SSLError):  # the system's CAs do not know it
        requests.get(url, timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_lb.port}/", timeout=5)
    files = _files(pairs[0])
    assert presented_certificate_problem(url, files.certfile, leaf_certificate(files)) is None
    other = _files(pairs[1])
    problem = presented_certificate_problem(url, other.certfile, leaf_certificate(other))
    assert problem is not None and "does not verify against service.tls.certfile" in problem


def test_the_key_is_in_one_0600_file_in_a_0700_directory_and_nowhere_else(
    tls_lb: HAProxyLB, pairs: tuple[Pair, Pair], state_dir: Path
) -> None:
    holding = [
        p
        for p in state_dir.rglob("*")
        if p.is_file()
        and any(line in p.read_text(errors="replace") for line in pairs[0].key_lines())
    ]
    assert holding == [tls_lb.pem_path]
    assert stat.S_IMODE(tls_lb.pem_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls_lb.pem_path.parent.stat().st_mode) == 0o700
    pid = tls_lb.pid()
    assert pid is not None
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    assert not any(line in argv + environ for line in pairs[0].key_lines())


def test_a_renewed_pair_is_swapped_in_without_a_restart(
    tls_lb: HAProxyLB, pairs: tuple[Pair, Pair], state_dir: Path
) -> None:
    pid = tls_lb.pid()
    assert presented(tls_lb.port) == _der(pairs[0])
    renewed = HAProxyLB(state_dir, tls_lb.port, tls=_files(pairs[1]))
    assert renewed.up() is False  # not started again
    assert renewed.pid() == pid
    assert presented(tls_lb.port) == _der(pairs[1])
    assert tls_lb.pem_path.read_text().startswith(pairs[1].certfile.read_text().rstrip("\n"))
    assert stat.S_IMODE(tls_lb.pem_path.stat().st_mode) == 0o600


def test_a_key_of_another_certificate_is_refused_in_one_line_and_the_old_pair_serves(
    tls_lb: HAProxyLB, pairs: tuple[Pair, Pair], state_dir: Path
) -> None:
    mixed = TLSFiles(keyfile=str(pairs[0].keyfile), certfile=str(pairs[1].certfile))
    with pytest.raises(SandboxError) as refused:
        HAProxyLB(state_dir, tls_lb.port, tls=mixed).up()
    line = str(refused.value)
    assert "\n" not in line and "refused the endpoint's new certificate" in line
    assert not any(part in line for part in pairs[0].key_lines())
    assert presented(tls_lb.port) == _der(pairs[0])


def test_a_restart_after_a_crash_serves_https_again_and_down_deletes_the_key(
    tls_lb: HAProxyLB, pairs: tuple[Pair, Pair], state_dir: Path
) -> None:
    pid = tls_lb.pid()
    assert pid is not None
    processes.terminate(pid, [str(tls_lb.cfg_path)])
    again = HAProxyLB(state_dir)  # from the record: no files given
    assert again.ensure_running() is True
    assert presented(again.port) == _der(pairs[0])
    again.down()
    assert not again.pem_path.exists()


def test_switching_between_http_and_https_needs_the_load_balancer_replaced(
    tls_lb: HAProxyLB, state_dir: Path
) -> None:
    with pytest.raises(SandboxError, match="already serves HTTPS; run `lb down` first"):
        HAProxyLB(state_dir, tls_lb.port, tls=False).up()


def test_lb_up_refuses_a_missing_key_file_naming_the_field(
    state_dir: Path, pairs: tuple[Pair, Pair]
) -> None:
    missing = pairs[0].keyfile.with_name("gone.key")
    lb = HAProxyLB(state_dir, free_port(), tls=TLSFiles(str(missing), str(pairs[0].certfile)))
    with pytest.raises(SandboxError) as refused:
        lb.up()
    assert str(refused.value) == f"service.tls.keyfile: no such file: {missing}"
    assert lb.pid() is None


def test_the_cli_wants_both_tls_files_or_neither(state_dir: Path, pairs: tuple[Pair, Pair]) -> None:
    result = CliRunner().invoke(
        sandbox,
        ["lb", "up", "--state-dir", str(state_dir), "--port", str(free_port()),
         "--tls-certfile", str(pairs[0].certfile)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "give --tls-certfile and --tls-keyfile together" in result.output


def test_load_goes_through_https_verified_against_the_cacert(
    tls_lb: HAProxyLB, pairs: tuple[Pair, Pair], state_dir: Path
) -> None:
    from reconciler.sandbox.loadgen import run_load

    record = replicas.launch(state_dir, "r0", "local-1a", "on_demand", cold_start_s=0.0)
    tls_lb.set_members({"r0": ("127.0.0.1", record.port)})
    assert tls_lb.wait_until_up(["r0"], timeout=10)
    url = f"https://127.0.0.1:{tls_lb.port}"
    served = run_load(url, 20, 0.5, cacert=str(pairs[0].certfile))
    assert served.successes == served.sent == 10
    refused = run_load(url, 20, 0.5, cacert=str(pairs[1].certfile))  # another certificate
    assert refused.successes == 0 and set(refused.errors) == {"SSLError"}


def test_a_certificate_changed_since_the_plan_is_not_served_under_it(
    tls_lb: HAProxyLB, pairs: tuple[Pair, Pair], state_dir: Path
) -> None:
    """`--tls-cert-sha256`: the digest the front stack was planned with."""
    planned = hashlib.sha256(pairs[0].certfile.read_bytes()).hexdigest()
    lb = HAProxyLB(state_dir, tls_lb.port, tls=_files(pairs[1]), tls_cert_sha256=planned)
    with pytest.raises(SandboxError) as refused:
        lb.up()
    assert str(refused.value).startswith(
        "service.tls.certfile: changed since this plan was made (SHA-256 "
    )
    assert str(refused.value).endswith(f"): {pairs[1].certfile}; plan again")
    assert presented(tls_lb.port) == _der(pairs[0])
    same = HAProxyLB(state_dir, tls_lb.port, tls=_files(pairs[0]), tls_cert_sha256=planned)
    assert same.up() is False


def test_lb_status_says_https(tls_lb: HAProxyLB, state_dir: Path) -> None:
    result = CliRunner().invoke(sandbox, ["lb", "status", "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    assert f"on https://127.0.0.1:{tls_lb.port}, " in result.output


def test_a_connection_that_sends_nothing_is_not_logged_over_https(tls_lb: HAProxyLB) -> None:
    """The serving check's TCP reachability probe, against an HTTPS frontend."""
    import socket
    import time

    with socket.create_connection(("127.0.0.1", tls_lb.port), timeout=2):
        pass
    time.sleep(0.3)
    assert [ln for ln in tls_lb.log_lines() if "sandbox" in ln.split("]:", 1)[-1]] == []
