"""Issue 16's reproduction on the sandbox, with real Terraform: a plan kept for review with
`plan --out` is refused by `apply --plan` once the state moved (one line, exit 4, nothing
applied), and a fresh reviewed plan applies exactly the changes it shows."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.sandbox import replicas
from tests.e2e.conftest import SANDBOX_ZONES, free_port, project_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SPEC = """\
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 30
    timeout_seconds: 2
  replicas: {n}
"""


@pytest.fixture
def root(short_tmp: Path) -> Iterator[Path]:
    with project_root(short_tmp / "root", {"rev": SPEC.format(n=2) + SANDBOX_ZONES}) as path:
        yield path


def cli(root: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*args, "--root", str(root)], env=env)
    return result.exit_code, result.stdout, result.stderr


def tfstates(root: Path) -> dict[str, dict[str, Any]]:
    """Each stack's local Terraform state (lineage, serial, resources)."""
    found = {}
    for path in sorted((root / "state" / "rev").glob("*/terraform.tfstate")):
        text = path.read_text()
        if text.strip():
            found[path.parent.name] = json.loads(text)
    return found


def addresses(state: dict[str, Any]) -> set[str]:
    out = set()
    for res in state.get("resources", []):
        if res.get("mode") != "managed":
            continue
        base = ".".join(p for p in (res.get("module"), res["type"], res["name"]) if p)
        for inst in res["instances"]:
            key = inst.get("index_key")
            out.add(base if key is None else f'{base}["{key}"]' if isinstance(key, str)
                    else f"{base}[{key}]")  # fmt: skip
    return out


def planned(plan_dir: Path, stack: str) -> tuple[set[str], set[str]]:
    """(created, deleted) addresses of a kept plan.json; a replacement is neither."""
    doc = json.loads((plan_dir / stack / "plan.json").read_text())
    created, deleted = set(), set()
    for rc in doc["resource_changes"]:
        actions = rc["change"]["actions"]
        if actions == ["create"]:
            created.add(rc["address"])
        elif actions == ["delete"]:
            deleted.add(rc["address"])
    return created, deleted


def kill_one_replica(root: Path) -> str:
    sandbox = root / "state" / "rev" / "sandbox"
    victim = sorted((s for s in replicas.list_replicas(sandbox) if s.alive),
                    key=lambda s: s.record.replica_id)[0]  # fmt: skip
    os.kill(victim.record.pid, signal.SIGKILL)
    return victim.record.replica_id


def test_a_stale_reviewed_plan_is_refused_and_a_fresh_one_applies_exactly(
    root: Path, tmp_path: Path
) -> None:
    env = {"HEDGEFORM_LB_PORT": str(free_port()), "HEDGEFORM_SANDBOX_COLD_START": "1"}
    code, out, err = cli(root, env, "apply", "rev")
    assert code == 0, out + err

    # replicas: 2 -> 3, planned for review
    (root / "services" / "rev.yaml").write_text(SPEC.format(n=3) + SANDBOX_ZONES)
    reviewed = tmp_path / "review"
    code, out, err = cli(root, env, "plan", "rev", "--out", str(reviewed))
    assert code == 0, out + err
    assert "Plan: 1 to create, 0 to update, 0 to delete, 0 to replace" in out
    doc = (reviewed / "plan.md").read_text()
    assert "Plan: 1 to create, 0 to update, 0 to delete, 0 to replace" in doc
    assert "WARNING" not in doc and str(root) not in doc
    again = tmp_path / "again"  # the same inputs, planned again: the same comment, byte for byte
    code, out, err = cli(root, env, "plan", "rev", "--out", str(again))
    assert code == 0, out + err
    assert (again / "plan.md").read_bytes() == (reviewed / "plan.md").read_bytes()
    manifest = json.loads((reviewed / "manifest.json").read_text())
    assert {s: (m["lineage"], m["serial"]) for s, m in manifest["stacks"].items()} == {
        s: (st["lineage"], st["serial"]) for s, st in tfstates(root).items()
    }

    # one replica dies, and a pass replaces it: the state moves under the reviewed plan
    kill_one_replica(root)
    code, out, err = cli(root, env, "apply", "rev", "--no-wait")
    assert code == 0, out + err
    moved = tfstates(root)
    assert any(moved[s]["serial"] != m["serial"] for s, m in manifest["stacks"].items())

    code, out, err = cli(root, env, "apply", "rev", "--plan", str(reviewed))
    assert code == 4, out + err
    assert err.count("\n") == 1 and err.startswith("error: stale plan: stack "), err
    assert "nothing was applied" in err
    assert {s: st["serial"] for s, st in tfstates(root).items()} == {
        s: st["serial"] for s, st in moved.items()
    }  # nothing applied

    # a fresh review, applied at once, changes exactly what it shows
    victim = kill_one_replica(root)
    fresh = tmp_path / "fresh"
    code, out, err = cli(root, env, "plan", "rev", "--out", str(fresh))
    assert code == 0, out + err
    doc = (fresh / "plan.md").read_text()
    assert "WARNING: this plan destroys or replaces resources" in doc
    assert f"`{victim}` | delete" in doc
    before = {s: addresses(st) for s, st in tfstates(root).items()}
    code, out, err = cli(root, env, "apply", "rev", "--plan", str(fresh))
    assert code == 0, out + err
    assert "applied the reviewed plan of" in out
    after = {s: addresses(st) for s, st in tfstates(root).items()}
    created_any = False
    for stack in sorted(set(before) | set(after)):
        created, deleted = planned(fresh, stack)
        assert after.get(stack, set()) - before.get(stack, set()) == created, stack
        assert before.get(stack, set()) - after.get(stack, set()) == deleted, stack
        created_any |= bool(created)
    assert created_any
    assert (fresh / "local-1" / "tfplan").is_file()  # the reviewed directory is kept as is
    code, out, err = cli(root, env, "apply", "rev", "--plan", str(fresh))
    assert code == 4 and "stale plan: " in err, out + err  # a reviewed plan applies once
    # were our check fooled (the manifest rewritten to today's states), Terraform's own check
    # ("Saved plan is stale") is the same one-line refusal
    forged = json.loads((fresh / "manifest.json").read_text())
    for stack, st in tfstates(root).items():
        forged["stacks"][stack].update(lineage=st["lineage"], serial=st["serial"])
    record = json.loads((root / "state" / "rev" / "reconciler.json").read_text())
    forged["version_before"] = record["memory"]["current_version"]
    (fresh / "manifest.json").write_text(json.dumps(forged))
    code, out, err = cli(root, env, "apply", "rev", "--plan", str(fresh))
    assert code == 4, out + err
    assert err.count("\n") == 1 and "saved plan is stale" in err, err
    # the memory the plan was decided with is recorded, and the next pass converges from it
    record = json.loads((root / "state" / "rev" / "reconciler.json").read_text())
    kept = json.loads((fresh / "record.json").read_text())
    assert record["memory"] == kept["memory"]
    code, out, err = cli(root, env, "apply", "rev")
    assert code == 0, out + err
    assert "serving after" in out
