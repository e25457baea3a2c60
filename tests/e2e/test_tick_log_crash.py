"""The tick log keeps a tick's history through a kill -9 of `hedgeform run` while Terraform
applies: the decision (launches, reasons) was written before the apply, so after a restart
`hedgeform status` still shows what the killed tick launched, and says the tick was
interrupted. Then destroy and apply again: no replica id of the first life comes back (ids
are unique per service across its lives)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.engine.status_view import INTERRUPTED, read_tail
from reconciler.sandbox import replicas
from tests.e2e.conftest import applied, fast_sandbox_env, hedgeform_keeping_signals

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HEDGEFORM = str(Path(sys.executable).parent / "hedgeform")
SERVICE = "tl"
LAUNCHES = ("launch", "fallback")  # an on-demand launch is a fallback


hedgeform = hedgeform_keeping_signals


def events(root: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    view = json.loads(hedgeform(root, env, "status", SERVICE, "--json", "--events", "200"))
    return list(view["events"])


def test_kill_9_of_run_mid_apply_keeps_the_ticks_decision(short_tmp: Path) -> None:
    env = fast_sandbox_env()
    with applied(short_tmp, SERVICE, env) as paths:
        sandbox, root = paths.sandbox_dir, paths.root
        first_life = {s.record.replica_id for s in replicas.list_replicas(sandbox)}
        # the apply's own passes are in the tick log: its launches show in status
        launched = {e["replica"] for e in events(root, env) if e["kind"] in LAUNCHES}
        assert first_life <= launched, (first_life, launched)

        # a replica dies, so the loop's first tick launches a replacement: kill it mid-apply
        victim = sorted(s.record.replica_id for s in replicas.list_replicas(sandbox) if s.alive)[0]
        replicas.stop(sandbox, victim)
        killed = subprocess.run(
            [HEDGEFORM, "run", SERVICE, "--interval", "1", "--root", str(root)],
            env={**os.environ, **env, "HEDGEFORM_CRASH_AT": "during_apply"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert killed.returncode == -9, killed.stdout + killed.stderr
        last = read_tail(paths.state_dir / "ticks.jsonl")[-1]
        assert last["message"] == "tick decided" and last["source"] == "run", last
        replacement = [x["id"] for x in last["decided"]["launches"]]
        assert replacement, last

        hedgeform(root, env, "run", SERVICE, "--max-ticks", "1", "--interval", "1")
        seen = events(root, env)
        print(json.dumps(seen, indent=1))  # shown when an assertion below fails
        kinds = {(e["kind"], e["replica"]) for e in seen}
        assert all(any((k, rid) in kinds for k in LAUNCHES) for rid in replacement), seen
        assert any(e["kind"] == "error" and e["reason"] == INTERRUPTED for e in seen), seen
        out = hedgeform(root, env, "status", SERVICE)
        assert "tick interrupted before its outcome was recorded" in out, out

        hedgeform(root, env, "destroy", SERVICE)
        hedgeform(root, env, "apply", SERVICE)
        used = first_life | set(replacement)
        second_life = {s.record.replica_id for s in replicas.list_replicas(sandbox) if s.alive}
        assert second_life and not second_life & used, (second_life, used)
