"""Issue 16, deliverable 5: the worked CI example in examples/ci/ runs as written. Its
`hedgeform` command lines are read out of the GitHub workflows and run, in the order CI
runs them, against the sandbox with real Terraform, beside a `review` loop on the host:

1. the first pull request's plan, applied on merge (a `changes: review` service has nothing
   the loop may run before it);
2. a pull request raising `replicas`: the host's checkout already has the file, the loop
   holds it (and keeps serving the reviewed version) until the merge applies its plan;
3. a plan the loop moved the state under (a replica replaced) is refused on merge, exit 4.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.engine import commands
from reconciler.errors import ReconcileError
from reconciler.sandbox import replicas
from tests.e2e.conftest import SANDBOX_ZONES, free_port, project_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "ci" / "github"
SPEC = """\
service:
  readiness_probe:
    path: /health
    initial_delay_seconds: 30
    timeout_seconds: 2
  replicas: {n}
"""


def hedgeform_lines(workflow: str) -> list[str]:
    """The `hedgeform ...` lines of a workflow's `run:` steps, in order."""
    doc = yaml.safe_load((EXAMPLES / workflow).read_text())
    lines = []
    for job in doc["jobs"].values():
        for step in job["steps"]:
            for line in str(step.get("run", "")).splitlines():
                if line.strip().startswith("hedgeform "):
                    lines.append(line.strip())
    return lines


def test_the_workflows_are_the_two_halves_of_a_review() -> None:
    plan = yaml.safe_load((EXAMPLES / "hedgeform-plan.yml").read_text())
    apply = yaml.safe_load((EXAMPLES / "hedgeform-apply.yml").read_text())
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    assert "pull_request" in plan[True] and apply[True]["push"]["branches"] == ["main"]
    assert hedgeform_lines("hedgeform-plan.yml") == [
        'hedgeform plan "$SERVICE" --out "review/$SERVICE" --format github'
    ]
    assert hedgeform_lines("hedgeform-apply.yml") == [
        'hedgeform apply "$SERVICE" --plan "review/$SERVICE" --wait-lock'
    ]
    for doc in (plan, apply):  # both see the loop's state
        assert "HEDGEFORM_STATE_BACKEND" in doc["env"]
    # the comment is the document plan --out writes, and the artifact carries the whole DIR
    steps = [s for j in plan["jobs"].values() for s in j["steps"]]
    comment = next(s for s in steps if "sticky-pull-request-comment" in s.get("uses", ""))
    assert comment["with"]["path"] == "review/${{ env.SERVICE }}/plan.md"
    upload = next(s for s in steps if "upload-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "review/"


@pytest.fixture
def root(short_tmp: Path) -> Iterator[Path]:
    with project_root(short_tmp / "root", {"web": SPEC.format(n=2) + SANDBOX_ZONES}) as path:
        (path / "services" / "web.hedgeform.yaml").write_text("changes: review\n")
        yield path


def run_ci(workflow: str, root: Path, workdir: Path, env: dict[str, str]) -> list[int]:
    """Run the workflow's hedgeform lines as its shell would, in `workdir` (the checkout),
    with SERVICE=web; the project root is the test's."""
    codes = []
    for line in hedgeform_lines(workflow):
        argv = shlex.split(line.replace("$SERVICE", "web"))[1:]
        argv = [str(workdir / a) if a.startswith("review/") else a for a in argv]
        result = CliRunner().invoke(main, [*argv, "--root", str(root)], env=env)
        codes.append(result.exit_code)
        assert result.exit_code in (0, 4), result.output
    return codes


def loop(root: Path, env: dict[str, str], ticks: int) -> list[dict[str, object]]:
    """`hedgeform run web` on the host for `ticks` ticks; its tick log records."""
    result = CliRunner().invoke(
        main,
        ["run", "web", "--root", str(root), "--max-ticks", str(ticks), "--interval", "1"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    log = root / "state" / "web" / "ticks.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def alive(root: Path) -> list[str]:
    sandbox = root / "state" / "web" / "sandbox"
    return sorted(s.record.replica_id for s in replicas.list_replicas(sandbox) if s.alive)


def held_by_a_loop(rec: object, service: str, doing: str) -> Iterator[None]:
    """`_lease_held` as it behaves while a loop on another host holds the leader lease
    (a remote state): it refuses."""
    raise ReconcileError(
        f"a reconcile loop of {service} holds the leader lease; nothing was {doing}"
    )
    yield  # pragma: no cover


def test_ci_example_on_sandbox(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # (a short name: HAProxy's admin socket under pytest's tmp path must stay within 97 bytes)
    env = {"HEDGEFORM_LB_PORT": str(free_port()), "HEDGEFORM_SANDBOX_COLD_START": "1"}

    # 1. Nothing reviewed yet: the host's loop holds every pass; the first merge applies.
    records = loop(root, env, 1)
    assert [r["message"] for r in records if "tick" in str(r["message"])] == ["tick held"]
    assert not alive(root)
    first = tmp_path / "pr-1"
    assert run_ci("hedgeform-plan.yml", root, first, env) == [0]
    doc = (first / "review" / "web" / "plan.md").read_text()
    assert doc.startswith("<!-- hedgeform-plan service=web -->")
    assert run_ci("hedgeform-apply.yml", root, first, env) == [0]
    assert len(alive(root)) >= 2
    # The reviewed file may be reconciled by hand until it serves (nothing held): steady
    # ticks move no state, so a plan made now stays fresh while the loop runs.
    settled = CliRunner().invoke(main, ["apply", "web", "--root", str(root)], env=env)
    assert settled.exit_code == 0 and "serving after" in settled.output, settled.output

    # 2. replicas 2 -> 3 merged on the host before CI applied it: held, the reviewed 2 run.
    (root / "services" / "web.yaml").write_text(SPEC.format(n=3) + SANDBOX_ZONES)
    second = tmp_path / "pr-2"
    assert run_ci("hedgeform-plan.yml", root, second, env) == [0]
    assert "Plan: 1 to create" in (second / "review" / "web" / "plan.md").read_text()
    records = loop(root, env, 2)
    held = [r for r in records if r["message"] == "held for review"]
    assert held and "web.yaml changed since the reviewed v1" in str(held[-1]["held"])
    ticks = [r for r in records if r["message"] == "tick"]
    assert ticks[-1]["decision"]["target"] == 2 and ticks[-1]["held"]  # type: ignore[index]
    status = CliRunner().invoke(main, ["status", "web", "--root", str(root)], env=env)
    assert "held: web.yaml changed" in status.output
    refused = CliRunner().invoke(main, ["apply", "web", "--root", str(root)], env=env)
    assert refused.exit_code == 1 and "not applied: web.yaml" in refused.output

    # 3. The merge applies the reviewed plan, beside a running loop (under review the loop
    # waits for this plan: no leader lease is asked for, as a remote state's loop holds it);
    # the loop then takes the new version.
    with monkeypatch.context() as patched:
        patched.setattr(commands, "_lease_held", contextlib.contextmanager(held_by_a_loop))
        assert run_ci("hedgeform-apply.yml", root, second, env) == [0]
    records = loop(root, env, 1)
    assert any(r["message"] == "a reviewed version: reloaded" for r in records)
    ticks = [r for r in records if r["message"] == "tick"]
    assert ticks[-1]["decision"]["target"] == 3 and "held" not in ticks[-1]

    # 4. A plan the loop moved the state under is refused on merge, exit 4.
    (root / "services" / "web.yaml").write_text(SPEC.format(n=2) + SANDBOX_ZONES)
    third = tmp_path / "pr-3"
    assert run_ci("hedgeform-plan.yml", root, third, env) == [0]
    victim = alive(root)[0]
    pid = next(
        s.record.pid
        for s in replicas.list_replicas(root / "state" / "web" / "sandbox")
        if s.record.replica_id == victim
    )
    os.kill(pid, signal.SIGKILL)
    loop(root, env, 1)  # replaces it: the state moves
    assert run_ci("hedgeform-apply.yml", root, third, env) == [4]
