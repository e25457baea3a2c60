"""Backtest output: the terminal table, the JSON file and the PNG plot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from reconciler.backtest.runner import PolicyStats

Results = Mapping[str, Mapping[str, PolicyStats]]  # trace set -> policy -> stats


def format_table(results: Results) -> str:
    """One row per trace set and policy; the name columns are as wide as the longest name."""
    tw = max([8, *(len(trace) for trace in results)])
    pw = max([12, *(len(name) for policies in results.values() for name in policies)])
    header = (
        f"{'trace':<{tw}} {'policy':<{pw}} {'cost %':>7} {'avail %':>8} {'preempt':>8} "
        f"{'spot l.':>8} {'od l.':>6} {'wall s':>7}"
    )
    lines = [header, "-" * len(header)]
    for trace, policies in results.items():
        for name, s in policies.items():
            lines.append(
                f"{trace:<{tw}} {name:<{pw}} {s.cost_pct:>7.1f} {s.availability_pct:>8.2f} "
                f"{s.preemptions:>8.1f} {s.spot_launches:>8.1f} {s.od_launches:>6.1f} "
                f"{s.wall_s:>7.2f}"
            )
    return "\n".join(lines)


def to_json(
    results: Results,
    config: Mapping[str, object] | None = None,
    spans: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """`config`: the settings of the run; `spans`: per trace set whose zones differ in length,
    the line that says what was dropped (the same line as on stderr)."""
    return {
        "config": dict(config or {}),
        "spans": dict(spans or {}),
        "traces": {
            trace: {name: s.to_json() for name, s in policies.items()}
            for trace, policies in results.items()
        },
    }


def write_json(
    results: Results,
    path: Path,
    config: Mapping[str, object] | None = None,
    spans: Mapping[str, str] | None = None,
) -> None:
    path.write_text(json.dumps(to_json(results, config, spans), indent=2) + "\n")


def write_plot(results: Results, path: Path) -> None:
    """Ready replicas by market over the first window of the first trace, one row per policy,
    and a cost/availability scatter of every policy on every trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first_trace = next(iter(results))
    policies = results[first_trace]
    rows = len(policies) + 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 1.6 * rows + 3), squeeze=False)
    for ax, (name, stats) in zip(axes[:-1, 0], policies.items(), strict=False):
        w = stats.windows[0]
        hours = [t * 30 / 3600 for t in range(len(w.ready_spot))]
        ax.stackplot(
            hours, w.ready_spot, w.ready_od, labels=["spot", "on-demand"], colors=["C2", "C1"]
        )
        ax.step(hours, w.targets, where="post", color="k", lw=0.8, label="target")
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_xlim(0, hours[-1] if hours else 1)
    axes[0, 0].set_title(f"Ready replicas by market, {first_trace}, first window")
    axes[0, 0].legend(loc="upper right", fontsize=7, ncols=3)
    axes[-2, 0].set_xlabel("hours")
    scatter = axes[-1, 0]
    markers = "osD^v<>p*"
    for i, (trace, pols) in enumerate(results.items()):
        for j, (name, s) in enumerate(pols.items()):
            scatter.scatter(
                s.cost_pct,
                s.availability_pct,
                marker=markers[i % len(markers)],
                color=f"C{j}",
                label=name if i == 0 else None,
            )
            scatter.annotate(trace, (s.cost_pct, s.availability_pct), fontsize=6)
    scatter.set_xlabel("cost % of on-demand")
    scatter.set_ylabel("availability %")
    scatter.legend(fontsize=7, ncols=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
