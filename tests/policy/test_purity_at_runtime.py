"""The policy is pure when it runs, not only in its import statements: importing it loads no
module that does I/O, keeps time or draws random numbers (the import-linter contract cannot
see a package's `__init__` pulling in its siblings; a user-eye check of issue 10 found
`reconciler.spec.__init__` loading the YAML loader this way)."""

from __future__ import annotations

import json
import subprocess
import sys

# The contract's forbidden list (pyproject.toml), as modules a fresh interpreter can show.
FORBIDDEN = {
    "subprocess", "socket", "random", "shutil", "requests", "boto3", "jinja2", "yaml",
    "asyncio", "reconciler.spec.loading", "reconciler.paths", "reconciler.traces",
    "reconciler.files", "reconciler.backtest", "reconciler.engine", "reconciler.sandbox",
    "reconciler.clouds", "reconciler.backends", "reconciler.terraform", "reconciler.rendering",
    "reconciler.stacks", "reconciler.readiness", "reconciler.plan_summary",
}  # fmt: skip


def test_importing_the_policy_loads_no_forbidden_module() -> None:
    code = (
        "import sys, json; before = set(sys.modules); import reconciler.policy; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    assert "reconciler.policy" in loaded
    assert sorted(loaded & FORBIDDEN) == []
