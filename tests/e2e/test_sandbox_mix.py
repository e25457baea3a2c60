"""End to end on the sandbox with several GPU types (issue 15): `services/llama-mix.yaml`
asks for `{L4: 1, A10G: 1}`; each (zone, type) is a pool, the default policy runs a mix of
both, and each replica carries its type into Terraform's state, the status table and its id.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.sandbox.haproxy import HAProxyLB
from reconciler.sandbox.market import SpotMarket
from tests.e2e.conftest import REPO, free_port, project_root

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ZONES = ("local-1a", "local-1b", "local-2a")


def hedgeform(root: Path, env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--root", str(root)], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def typed_replicas(root: Path) -> dict[str, str]:
    """replica id -> the GPU type its Terraform state records (the local module's triggers)."""
    out: dict[str, str] = {}
    for region in ("local-1", "local-2"):
        path = root / "state" / "llama-mix" / region / "terraform.tfstate"
        for res in json.loads(path.read_text())["resources"]:
            if res["type"] == "null_resource" and res["name"] == "replica":
                for inst in res["instances"]:
                    triggers = inst["attributes"]["triggers"]
                    out[inst["index_key"]] = triggers.get("accelerator", "")
    return out


def test_a_mix_of_two_types_runs_each_replica_as_its_type(short_tmp: Path) -> None:
    # min_replicas 5 at 5 requests/s per L4 = 25 requests/s: at the sandbox's prices (AWS
    # list prices, spot a third: L4 $0.27/h for 5 req/s, A10G $0.34/h for 8) the cheapest
    # way is 2 x L4 + 2 x A10G ($1.21/h; 4 x A10G or 5 x L4 cost $1.34/h).
    text = (REPO / "services" / "llama-mix.yaml").read_text()
    text = text.replace("min_replicas: 2", "min_replicas: 5").replace(
        "num_overprovision: 1", "num_overprovision: 0"
    )
    env = {
        "HEDGEFORM_LB_PORT": str(free_port()),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
        "HEDGEFORM_SANDBOX_LATENCY_MS": "1",
    }
    with project_root(short_tmp / "root", {"llama-mix": text}) as root:
        sandbox = root / "state" / "llama-mix" / "sandbox"
        SpotMarket.init(sandbox, now=time.time(), warning_seconds=1)
        market = SpotMarket.load(sandbox)
        for zone in ZONES:
            market.set_capacity(zone, 4)
        out = hedgeform(root, env, "plan", "llama-mix")
        assert "note: sandbox zones local-1a, local-1b, local-2a offer L4 ($0.80/h" in out
        out = hedgeform(root, env, "apply", "llama-mix")
        types = typed_replicas(root)
        spot = {rid: t for rid, t in types.items() if "-spot-" in rid}
        assert sorted(spot.values()) == ["A10G", "A10G", "L4", "L4"], types
        for rid, gpu in types.items():  # the id names the pool: <zone>-<type>-<market>-<n>
            assert f"-{gpu.lower()}-" in rid, (rid, gpu)
        # each type spreads its spot over the zones (SpotHedge per type)
        for gpu in ("L4", "A10G"):
            zones = {rid.split(f"-{gpu.lower()}-")[0] for rid, t in spot.items() if t == gpu}
            assert len(zones) == 2, (gpu, spot)
        members = set(HAProxyLB(sandbox).members())
        assert set(spot) <= members
        status = hedgeform(root, env, "status", "llama-mix")
        for rid, gpu in spot.items():
            row = next(line for line in status.splitlines() if line.startswith(rid))
            assert f"/{gpu} " in row, row  # the zone column shows the pool
        # converged: nothing to change on the next pass
        again = hedgeform(root, env, "apply", "llama-mix")
        assert "0 to create" in again or "no changes" in again.lower(), again
        assert typed_replicas(root) == types
        hedgeform(root, env, "destroy", "llama-mix")
