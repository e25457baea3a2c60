"""`service.tls` end to end on the sandbox (issue 17, item 5): apply serves HTTPS with the given
self-signed pair, verified against its certificate; plain HTTP is not served; the private key
is in no tfvars, Terraform state, plan artefact, tick log, output or argv, only in HAProxy's
own 0600 copy; a pair renewed after a reviewed plan is not applied under it, and the loop
picks it up without restarting HAProxy."""

from __future__ import annotations

import json
import shutil
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.sandbox.haproxy import HAProxyLB
from tests.e2e.conftest import SANDBOX_ZONES, fast_sandbox_env, project_root
from tests.tlsfiles import Pair, make_pair, presented

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SERVICE = "tls"


def _spec(pair: Pair) -> str:
    return (
        f"""\
service:
  readiness_probe: /health
  replicas: 1
  tls:
    keyfile: {pair.keyfile}
    certfile: {pair.certfile}
"""
        + SANDBOX_ZONES
    )


def cli(root: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--root", str(root)], env=env)
    return result.exit_code, result.stdout, result.stderr


def holding(paths: list[Path], pair: Pair) -> list[Path]:
    """The files among `paths` that hold any line of the pair's private key."""
    lines = [line.encode() for line in pair.key_lines()]
    return [p for p in paths if p.is_file() and any(ln in p.read_bytes() for ln in lines)]


def install(new: Pair, at: Pair) -> None:
    """Renew the pair at `at`'s paths with `new`'s files (as a certificate renewal does)."""
    shutil.copy(new.certfile, at.certfile)
    shutil.copy(new.keyfile, at.keyfile)


def process_texts() -> list[bytes]:
    """Every process's argv and environment that can be read."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        for name in ("cmdline", "environ"):
            try:
                out.append((proc / name).read_bytes())
            except OSError:
                continue
    return out


@pytest.fixture
def setup(short_tmp: Path) -> Iterator[tuple[Path, Pair]]:
    pair = make_pair(short_tmp / "certs")
    with project_root(short_tmp / "r", {SERVICE: _spec(pair)}) as root:
        yield root, pair


def test_apply_serves_https_with_the_given_pair_and_the_key_stays_in_haproxys_copy(
    setup: tuple[Path, Pair], short_tmp: Path
) -> None:
    root, pair = setup
    env = fast_sandbox_env()
    port = int(env["HEDGEFORM_LB_PORT"])
    url = f"https://127.0.0.1:{port}"

    code, out, err = cli(root, env, "apply", SERVICE)
    assert code == 0, out + err
    assert f"endpoint: {url}\n" in out
    assert "serving after" in out and "(TLS: service.tls's certificate)" in out

    code, status_out, status_err = cli(root, env, "status", SERVICE)
    assert code == 0 and f"endpoint: {url}" in status_out, status_out + status_err

    # HTTPS through the endpoint, verified against the given certificate (requests' own
    # verification: the test's certificate names 127.0.0.1).
    models = requests.get(f"{url}/v1/models", verify=str(pair.certfile), timeout=5)
    assert models.status_code == 200 and "sandbox-model" in models.text
    # Plain HTTP on the same port is not served.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)

    # One loop tick (the tick log) and a saved plan for review (plan --out).
    code, run_out, run_err = cli(root, env, "run", SERVICE, "--max-ticks", "1", "--interval", "1")
    assert code == 0, run_out + run_err
    reviewed = short_tmp / "reviewed"
    code, plan_out, plan_err = cli(root, env, "plan", SERVICE, "--out", str(reviewed))
    assert code == 0, plan_out + plan_err

    state = root / "state" / SERVICE
    tick_log = state / "ticks.jsonl"
    front_tfvars = next((state / "front").glob("*.tfvars.json"))
    tfstate = state / "front" / "terraform.tfstate"
    # What Terraform holds of the pair: the paths and the certificate's digest.
    tls_vars = json.loads(front_tfvars.read_text())["tls"]
    assert tls_vars["keyfile"] == str(pair.keyfile)
    assert len(tls_vars["cert_sha256"]) == 64
    assert tls_vars["cert_sha256"] in tfstate.read_text()
    assert tick_log.read_text().strip()

    # The key: only in HAProxy's own copy, 0600 in a 0700 directory; in nothing else
    # (tfvars, Terraform state, plans, the tick log, saved plans, outputs, argv, environ).
    pem = HAProxyLB(state / "sandbox").pem_path
    assert holding(list((root / "state").rglob("*")), pair) == [pem]
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(pem.parent.stat().st_mode) == 0o700
    assert holding(list(reviewed.rglob("*")), pair) == []
    assert list(reviewed.rglob("*"))  # the saved plan is there to be searched
    outputs = out + err + run_out + run_err + plan_out + plan_err
    assert not any(line in outputs for line in pair.key_lines())
    lines = [line.encode() for line in pair.key_lines()]
    assert not [t for t in process_texts() if any(ln in t for ln in lines)]

    # A reviewed plan is applied only with the certificate it was made with: a pair renewed
    # after `plan --out` is refused (one line) and the pair before keeps serving.
    lb = HAProxyLB(state / "sandbox")
    pid = lb.pid()
    first = ssl.PEM_cert_to_DER_cert(pair.certfile.read_text())
    planned = make_pair(short_tmp / "planned")
    install(planned, pair)
    review = short_tmp / "review"
    code, plan_out, plan_err = cli(root, env, "plan", SERVICE, "--out", str(review))
    assert code == 0, plan_out + plan_err
    assert "tls_certificate" in (review / "plan.md").read_text()
    renewed = make_pair(short_tmp / "renewed")
    install(renewed, pair)
    code, out, err = cli(root, env, "apply", SERVICE, "--plan", str(review))
    assert code != 0, out + err
    assert "service.tls.certfile: changed since this plan was made" in out + err
    assert presented(port) == first

    # The loop plans again and swaps the renewed pair in; HAProxy keeps running.
    code, run_out, run_err = cli(root, env, "run", SERVICE, "--max-ticks", "1", "--interval", "1")
    assert code == 0, run_out + run_err
    assert presented(port) == ssl.PEM_cert_to_DER_cert(renewed.certfile.read_text())
    assert lb.pid() == pid
    again = requests.get(f"{url}/v1/models", verify=str(renewed.certfile), timeout=5)
    assert again.status_code == 200
    assert holding(list((root / "state").rglob("*")), renewed) == [pem]
    outputs = out + err + run_out + run_err + plan_out + plan_err
    assert not any(line in outputs for line in renewed.key_lines() + planned.key_lines())
    assert holding(list(review.rglob("*")), planned) == []

    code, out, err = cli(root, env, "destroy", SERVICE)
    assert code == 0, out + err
    assert not pem.exists()
    assert holding(list((root / "state").rglob("*")), renewed) == []
