"""Several GPU types in the backtest (issue 15): the mix against each type alone.

    .venv/bin/python bench/mixed_backtest.py [--repeats 10] [--out DIR]

Builds two two-type trace sets from the SkyServe paper's AWS traces (`../shared/traces/
spothedge`), each file copied under a new GPU name so that two recorded spot markets stand for
two GPU types:

- set A: AWS1's three zones as A10G pools, AWS2's three as A100-80GB pools;
- set B: the roles swapped (AWS2 as A10G, AWS1 as A100-80GB).

us-west-2c is in both, so each set holds one zone with two pools. Each type's price and
throughput are Mélange's head example (`../shared/melange/anchor.json`, configs.head_example):
on-demand $/h as given, and the requests/s one replica sustains within the SLO for the
example's request mix, `1 / sum_b d_b / max_rps[b]` (the size-oblivious capacity: A10G 2.5,
A100-80GB 26.7). Then `hedgeform backtest --types FILE --rate R` runs for R = 7 req/s (three
A10Gs or one A100-80GB; A10G spot is the cheaper) and R = 20 req/s (A100-80GB the cheaper) in
three cells: 120 s warning with a 120 s cold start (the default), no warning, and a 600 s cold
start. Prints one markdown table; the trace sets, the types file and each cell's results stay
in --out (an existing --out keeps its other files; those three are replaced).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SETS = {"A": ("AWS1", "AWS2"), "B": ("AWS2", "AWS1")}
TYPES = ("A10G", "A100-80GB")
CELLS = (("120", "120"), ("0", "120"), ("120", "600"))
RATES = (7.0, 20.0)


def build(out: Path) -> tuple[dict[str, Path], Path]:
    head = json.loads((SHARED / "melange" / "anchor.json").read_text())["configs"]["head_example"]
    dist = [d for row in head["distribution"] for d in row]
    lines = ["gpus:"]
    for name in TYPES:
        gpu = head["gpus"][name]
        rps = [r for row in gpu["max_rps"] for r in row]
        serves = 1 / sum(d / r for d, r in zip(dist, rps, strict=True) if d)
        lines.append(f"  {name}: {{usd_per_hour: {gpu['usd_per_hour']}, max_rps: {serves:.4f}}}")
    types = out / "types.yaml"
    types.write_text("\n".join(lines) + "\n")
    dirs = {}
    for label, sources in SETS.items():
        target = out / f"set-{label}"
        shutil.rmtree(target, ignore_errors=True)  # no stale files from an earlier --out
        target.mkdir(parents=True)
        for source, gpu in zip(sources, TYPES, strict=True):
            for f in sorted((SHARED / "traces" / "spothedge" / source).glob("*.json")):
                zone = f.name.split("_", 1)[0]
                shutil.copy(f, target / f"{zone}_{gpu.lower()}_1.json")
        dirs[label] = target
    return dirs, types


def whole_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum` (argparse's one-line error, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


OUT_HELP = (
    "Directory to build the two trace sets in (set-A/ and set-B/) with the types file "
    "(types.yaml){also}; created when missing. set-A/, set-B/ and types.yaml in it are "
    "replaced (deleted and written again){replaced}. Default: a new temporary directory."
)


def prepare_out(
    parser: argparse.ArgumentParser, out: Path | None, prefix: str
) -> tuple[Path, dict[str, Path], Path]:
    """`out` (a new temporary directory when None), created, with the trace sets and the
    types file `build` writes there: (out, the sets by label, the types file). An --out that
    cannot be created, or a build that fails (an unwritable --out, no ../shared), ends the
    script with one line naming the path, exit 2."""
    try:
        if out is None:
            out = Path(tempfile.mkdtemp(prefix=prefix))
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.exit(2, f"{parser.prog}: error: --out {out}: cannot create it: {_why(exc)}\n")
    try:
        dirs, types = build(out)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        parser.exit(
            2, f"{parser.prog}: error: cannot build the trace sets in {out}: {where}{_why(exc)}\n"
        )
    return out, dirs, types


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats",
        type=whole_at_least(1),
        default=10,
        metavar="N",
        help="Windows per trace set and cell (at least 1; default 10), as the backtest's "
        "--repeats.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help=OUT_HELP.format(
            also=" and each cell's results (<set>-<rate>-w<warning>-c<cold start>.json)",
            replaced=", and so is each cell's results file",
        ),
    )
    args = parser.parse_args()
    out, dirs, types = prepare_out(parser, args.out, "mixed-backtest-")
    print(f"trace sets and types in {out}", file=sys.stderr)
    print("| set | rate | warning / cold start | run | cost % | avail % | preempt | od l. |")
    print("|---|---|---|---|---|---|---|---|")
    for label, directory in dirs.items():
        for rate in RATES:
            for warning, cold in CELLS:
                result = out / f"{label}-{rate:g}-w{warning}-c{cold}.json"
                done = subprocess.run(
                    [sys.executable, "-c", "from reconciler.cli import main; main()",
                     "backtest", "--traces", str(directory), "--types", str(types),
                     "--rate", f"{rate:g}", "--warning", warning, "--cold-start", cold,
                     "--repeats", str(args.repeats), "--quiet", "--json", str(result)],
                    capture_output=True, text=True, check=False, cwd=ROOT,
                )  # fmt: skip
                if done.returncode != 0:
                    sys.exit(f"backtest failed: {done.stdout.strip()} {done.stderr.strip()}")
                rows = json.loads(result.read_text())["traces"][directory.name]
                for name, row in rows.items():
                    print(
                        f"| {label} | {rate:g} | {warning} s / {cold} s | {name} | "
                        f"{row['cost_pct']:.1f} | {row['availability_pct']:.2f} | "
                        f"{row['preemptions']:.1f} | {row['od_launches']:.1f} |"
                    )


if __name__ == "__main__":
    main()
