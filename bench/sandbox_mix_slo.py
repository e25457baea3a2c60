"""The sandbox under load with two simulated GPU types (issue 15): SLO attainment and $/h of
the mix the policy chooses, against each type alone, at the same demand.

    .venv/bin/python bench/sandbox_mix_slo.py [--demand 25] [--load 22] [--duration 60]
        [--slo-ms 1000] [--seeds 2] [--json FILE]

The types are services/llama-mix.yaml's: L4 serving 5 requests/s per replica and A10G 8
(`target_qps_per_replica`), priced as the sandbox prices them (the on-demand list price of
each type's AWS instance, spot a third). Each sandbox replica simulates its type: it serves
completions one after another at its type's rate (replica_server `--max-rps`), so latency
grows with its queue, and HAProxy weighs it by that rate (`instance_aware_least_load`).

Three services, each sized for `--demand` requests/s with `min_replicas = max_replicas`
(the autoscaler holds still, so what is compared is the layout, not the autoscaler):

- mix: `accelerators: {L4: 1, A10G: 1}`, min = max = demand / 5 (the mix's units are the
  smallest type's requests/s); the policy chooses the counts;
- L4 only: `{L4: 1}`, min = max = ceil(demand / 5);
- A10G only: `{A10G: 1}`, min = max = ceil(demand / 8).

Each runs in a fresh project root with ample spot capacity in all three zones and no spare
(`num_overprovision: 0`): `hedgeform apply`, then a Poisson load of `--load` requests/s for
`--duration` s per seed through the load balancer (`hedgeform sandbox load --poisson-seed`),
then `hedgeform destroy`. Cost is what runs after the apply (types and markets read from the
stacks' Terraform state) at the sandbox's prices. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEDGEFORM = ROOT / ".venv" / "bin" / "hedgeform"
sys.path.insert(0, str(ROOT))

from reconciler.clouds.catalog import instance_for, list_price  # noqa: E402
from reconciler.sandbox import market_daemon  # noqa: E402
from reconciler.sandbox import replicas as sandbox_replicas  # noqa: E402
from reconciler.sandbox.haproxy import HAProxyLB  # noqa: E402
from reconciler.sandbox.market import SpotMarket  # noqa: E402
from reconciler.spec import Accelerator  # noqa: E402

SERVES = {"L4": 5.0, "A10G": 8.0}  # services/llama-mix.yaml's target_qps_per_replica
ZONES = ("local-1a", "local-1b", "local-2a")


def price(gpu: str, market: str) -> float:
    """The sandbox's $/h of one replica (backends/sandbox.py sandbox_types)."""
    on_demand = list_price("aws", instance_for("aws", [Accelerator(gpu, 1)]).price_key)
    assert on_demand is not None
    return on_demand / 3 if market == "spot" else on_demand


def spec_text(types: tuple[str, ...], replicas: int) -> str:
    base = (ROOT / "services" / "llama-mix.yaml").read_text()
    targets = "".join(f"      {t}: {SERVES[t]:g}\n" for t in types)
    accelerators = "{" + ", ".join(f"{t}: 1" for t in types) + "}"
    text = base.replace("min_replicas: 2", f"min_replicas: {replicas}")
    text = text.replace("max_replicas: 6", f"max_replicas: {replicas}")
    text = text.replace("num_overprovision: 1", "num_overprovision: 0")
    text = text.replace("      L4: 5\n      A10G: 8\n", targets)
    text = text.replace("{L4: 1, A10G: 1}", accelerators)
    assert accelerators in text and targets in text
    return text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def layout(root: Path, service: str, types: tuple[str, ...]) -> list[tuple[str, str]]:
    """(GPU type, market) of every replica the stacks' Terraform state holds."""
    out: list[tuple[str, str]] = []
    for state in sorted((root / "state" / service).glob("local-*/terraform.tfstate")):
        for res in json.loads(state.read_text()).get("resources", []):
            if res["type"] != "null_resource" or res["name"] != "replica":
                continue
            for inst in res["instances"]:
                triggers = inst["attributes"]["triggers"]
                out.append((triggers.get("accelerator") or types[0], triggers["market"]))
    return out


def measure(
    name: str, types: tuple[str, ...], replicas: int, args: argparse.Namespace
) -> dict[str, Any]:
    service = f"slo-{name}"
    base = Path(tempfile.mkdtemp(prefix="hf-slo-"))  # short: HAProxy's socket path
    root = base / "r"
    (root / "services").mkdir(parents=True)
    (root / "services" / f"{service}.yaml").write_text(spec_text(types, replicas))
    (root / "terraform").symlink_to(ROOT / "terraform")
    (root / ".tools").symlink_to(ROOT / ".tools")
    port = free_port()
    env = {
        **dict(__import__("os").environ),
        "HEDGEFORM_LB_PORT": str(port),
        "HEDGEFORM_SANDBOX_COLD_START": "1",
        "HEDGEFORM_SANDBOX_LATENCY_MS": "1",
    }
    sandbox = root / "state" / service / "sandbox"
    SpotMarket.init(sandbox, now=time.time(), warning_seconds=30)
    market = SpotMarket.load(sandbox)
    for zone in ZONES:
        market.set_capacity(zone, 20)
    try:
        print(f"{name}: apply", file=sys.stderr, flush=True)
        run([str(HEDGEFORM), "apply", service, "--root", str(root)], env)
        running = layout(root, service, types)
        results = []
        for seed in range(args.seeds):
            print(f"{name}: load seed {seed}", file=sys.stderr, flush=True)
            out = run(
                [
                    str(HEDGEFORM), "sandbox", "load", "--url", f"http://127.0.0.1:{port}",
                    "--qps", str(args.load), "--duration", str(args.duration),
                    "--slo-ms", str(args.slo_ms), "--poisson-seed", str(seed), "--json",
                ],
                env,
            )  # fmt: skip
            results.append(json.loads(out))
    finally:
        subprocess.run(
            [str(HEDGEFORM), "destroy", service, "--root", str(root)],
            capture_output=True,
            env=env,
            check=False,
        )
        # whatever a failed destroy left running goes before its directory does
        sandbox_replicas.stop_all(sandbox)
        HAProxyLB(sandbox).down()
        market_daemon.stop(sandbox)
        shutil.rmtree(base, ignore_errors=True)
    sent = sum(r["sent"] for r in results)
    counts: dict[str, int] = {}
    for gpu, mkt in running:
        key = f"{gpu} {'spot' if mkt == 'spot' else 'on-demand'}"
        counts[key] = counts.get(key, 0) + 1
    return {
        "name": name,
        "layout": counts,
        "capacity_rps": sum(SERVES[g] for g, _ in running),
        "usd_per_hour": round(sum(price(g, m) for g, m in running), 4),
        "slo_attainment": sum(r["within_slo"] for r in results) / sent if sent else 0.0,
        "p50_ms": [r["p50_ms"] for r in results],
        "p99_ms": [r["p99_ms"] for r in results],
        "failures": sum(r["failures"] for r in results),
        "sent": sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demand", type=float, default=25.0, help="requests/s to size for")
    parser.add_argument("--load", type=float, default=22.0, help="requests/s offered")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per seed")
    parser.add_argument("--slo-ms", type=float, default=1000.0, help="latency target, ms")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    if not HEDGEFORM.exists():
        raise SystemExit("run `make setup` first (.venv/bin/hedgeform is missing)")
    runs = (
        ("mix", ("L4", "A10G"), math.ceil(args.demand / SERVES["L4"])),
        ("l4", ("L4",), math.ceil(args.demand / SERVES["L4"])),
        ("a10g", ("A10G",), math.ceil(args.demand / SERVES["A10G"])),
    )
    rows = [measure(name, types, n, args) for name, types, n in runs]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    print(
        f"| service | runs | capacity (req/s) | $/h | within {args.slo_ms:g} ms "
        "| p50 (ms) | p99 (ms) | failed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        shown = ", ".join(f"{n} × {k}" for k, n in sorted(r["layout"].items()))
        p50 = " / ".join(f"{v:.0f}" for v in r["p50_ms"] if v is not None)
        p99 = " / ".join(f"{v:.0f}" for v in r["p99_ms"] if v is not None)
        print(
            f"| {r['name']} | {shown} | {r['capacity_rps']:g} | {r['usd_per_hour']:.2f} "
            f"| {100 * r['slo_attainment']:.1f} % | {p50} | {p99} | {r['failures']} |"
        )


if __name__ == "__main__":
    main()
