"""What the engine renders for the local module matches the module's declared variables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reconciler.backends.sandbox import SandboxCloud
from reconciler.terraform.fake import FakeTerraformRunner
from tests.clouds.test_render_contract import assert_contract
from tests.engine.test_reconcile_errors import REPO, reconciler


def test_every_rendered_local_stack_matches_variables_tf(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    shutil.copy(REPO / "services" / "llama.yaml", tmp_path / "services" / "llama.yaml")
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    fakes: dict[str, FakeTerraformRunner] = {}
    rec = reconciler(tmp_path, fakes, sandbox=True)
    assert isinstance(rec.cloud, SandboxCloud)  # the sandbox's own rendering, not a fake's
    result = rec.run_pass(apply=False, render_only=True)  # starts nothing, runs no Terraform
    assert not fakes
    assert result.decision.launches  # a first pass launches, so replicas are rendered
    stacks = {}
    for stack in ("front", "local-1", "local-2"):
        rendered = json.loads(
            (tmp_path / "state/llama" / stack / "terraform.tfvars.json").read_text()
        )
        assert_contract("local", rendered)
        stacks[stack] = rendered
    assert stacks["front"]["load_balancer"]["port"] == 1
    assert stacks["local-1"]["load_balancer"] is None
    rendered_ids = set(stacks["local-1"]["replicas"]) | set(stacks["local-2"]["replicas"])
    assert rendered_ids == {launch.replica_id for launch in result.decision.launches}


def test_a_tls_service_renders_only_paths_and_the_certificate_digest(tmp_path: Path) -> None:
    """service.tls: the front stack's `tls` matches the module's variable and holds the
    paths and the certificate's SHA-256; the key's content is in no rendered file."""
    import hashlib

    from tests.tlsfiles import make_pair

    pair = make_pair(tmp_path / "certs")
    (tmp_path / "services").mkdir()
    text = (REPO / "services" / "llama.yaml").read_text()
    tls = f"service:\n  tls:\n    keyfile: {pair.keyfile}\n    certfile: {pair.certfile}\n"
    (tmp_path / "services" / "llama.yaml").write_text(text.replace("service:\n", tls, 1))
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    fakes: dict[str, FakeTerraformRunner] = {}
    rec = reconciler(tmp_path, fakes, sandbox=True)
    assert rec.cloud.endpoint().startswith("https://127.0.0.1:")
    rec.run_pass(apply=False, render_only=True)
    files = sorted((tmp_path / "state/llama").glob("*/terraform.tfvars.json"))
    assert [f.parent.name for f in files] == ["front", "local-1", "local-2"]
    for path in files:
        rendered = json.loads(path.read_text())
        assert_contract("local", rendered)
        assert not any(line in path.read_text() for line in pair.key_lines())
        assert ("tls" in rendered) == (path.parent.name == "front")
    front = json.loads(files[0].read_text())
    assert front["tls"] == {
        "certfile": str(pair.certfile),
        "keyfile": str(pair.keyfile),
        "cert_sha256": hashlib.sha256(pair.certfile.read_bytes()).hexdigest(),
    }
