"""The soak's arithmetic and output: per-second samples in, figures, targets, table, plot out.

Pure (no processes, no clock) so the figures the soak's PASS/FAIL lines rest on are unit-tested
on hand-made samples. Units follow docs/backtest.md: spot costs 1 per replica-second and
on-demand 3; cost % = cost / (3 x target x seconds) x 100; availability % = share of sampled
seconds with ready replicas >= the target in force.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

SPOT_COST = 1.0
ON_DEMAND_COST = 3.0
MAX_FAILED_PCT = 0.5
MIN_AVAILABILITY_PCT = 99.0
TS_FORMAT = "%Y-%m-%d %H:%M:%S,%f"  # python-json-logger's asctime (local time)


@dataclass(frozen=True)
class Sample:
    """What one second of the load window looked like."""

    t: float  # seconds since the load started
    ready_spot: int
    ready_od: int
    running_spot: int  # alive processes, ready or not: what the cloud bills
    running_od: int
    lb_members: int
    lb_up: int  # members passing HAProxy's health check: what actually serves
    target: int | None  # the loop's target from its latest tick
    ok: int = 0  # requests sent in this second that succeeded (from the load generator)
    failed: int = 0

    @property
    def ready(self) -> int:
        return self.ready_spot + self.ready_od


def with_requests(samples: Sequence[Sample], per_second: Sequence[tuple[int, int]]) -> list[Sample]:
    """Attach the load generator's per-second (ok, failed) counts to the sample of that second."""
    out = []
    for s in samples:
        i = int(s.t)
        ok, failed = per_second[i] if 0 <= i < len(per_second) else (0, 0)
        out.append(Sample(**{**asdict(s), "ok": ok, "failed": failed}))
    return out


def availability_pct(samples: Sequence[Sample], serving: bool = False) -> float | None:
    """Share of samples with ready replicas (or, `serving`, LB members up) >= the target.
    A sample without a known target counts as a miss: not knowing is not being available."""
    if not samples:
        return None
    hits = sum(
        1 for s in samples if s.target is not None and (s.lb_up if serving else s.ready) >= s.target
    )
    return 100.0 * hits / len(samples)


def cost_pct(samples: Sequence[Sample]) -> float | None:
    """Replica-seconds spot x 1 + on-demand x 3 over 3 x target x seconds (each sample is
    one second), in percent: 100 means as expensive as serving the target on-demand."""
    cost = sum(s.running_spot * SPOT_COST + s.running_od * ON_DEMAND_COST for s in samples)
    base = sum(ON_DEMAND_COST * s.target for s in samples if s.target)
    return 100.0 * cost / base if base else None


def failed_pct(ok: int, failed: int) -> float | None:
    total = ok + failed
    return 100.0 * failed / total if total else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default), None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def parse_ts(value: str) -> float | None:
    """Unix time of a tick record's `ts`, or None when it is not one."""
    try:
        return datetime.strptime(value, TS_FORMAT).timestamp()
    except (TypeError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON object line of a log; a torn or foreign line is skipped."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        if isinstance(raw, dict):
            out.append(raw)
    return out


@dataclass(frozen=True)
class TickStats:
    ticks: int = 0
    failed_ticks: int = 0
    capacity_errors: int = 0
    durations_s: tuple[float, ...] = ()


def tick_stats(records: Iterable[Mapping[str, Any]], start: float, end: float) -> TickStats:
    """Ticks the loop logged in [start, end] (unix time): count, failures, spot launches
    refused for capacity, and each tick's duration. An `apply`'s passes (`"source":
    "apply"`) are not the loop's ticks and are left out."""
    ticks = failed = capacity = 0
    durations: list[float] = []
    for rec in records:
        at = parse_ts(str(rec.get("ts", "")))
        if at is None or not start <= at <= end or rec.get("source") == "apply":
            continue
        if rec.get("message") == "tick failed":
            failed += 1
            continue
        if rec.get("message") != "tick":
            continue
        ticks += 1
        total = rec.get("durations", {}).get("total_s")
        if isinstance(total, int | float):
            durations.append(float(total))
        for stack in dict(rec.get("stacks", {})).values():
            capacity += sum(
                1 for kind in stack.get("launch_failures", {}).values() if kind == "capacity"
            )
    return TickStats(ticks + failed, failed, capacity, tuple(durations))


def notice_times(
    records: Iterable[Mapping[str, Any]], kind: str, start: float, end: float
) -> list[float]:
    """Seconds since `start` of each `kind` notice (`warning`, `preempted`) in [start, end]."""
    out = []
    for rec in records:
        at = rec.get("at")
        if rec.get("kind") == kind and isinstance(at, int | float) and start <= at <= end:
            out.append(float(at) - start)
    return sorted(out)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class SoakReport:
    """Everything the soak measured, in the order the table prints it."""

    settings: dict[str, Any]
    duration_s: float
    availability_pct: float | None
    serving_availability_pct: float | None
    requests: int
    failed_requests: int
    failed_pct: float | None
    errors: dict[str, int]
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    cost_pct: float | None
    preemptions: int
    warnings: int
    capacity_errors: int
    ticks: int
    failed_ticks: int
    tick_p50_s: float | None
    tick_p99_s: float | None
    orphans: list[str]
    loop_exit: int | None  # the loop's exit code after SIGTERM; None: it had to be killed
    loop_stop_s: float | None
    destroy_exit: int | None
    completed: bool  # the load window ran to its end (no Ctrl-C, no loop death)
    notes: list[str] = field(default_factory=list)

    def checks(self) -> list[Check]:
        """The targets: failed requests <= 0.5 %, availability >= 99 %, no orphan, clean stop."""

        def fmt(v: float | None, unit: str = "%") -> str:
            return "n/a" if v is None else f"{v:.2f} {unit}"

        return [
            Check(
                f"failed requests <= {MAX_FAILED_PCT} %",
                self.failed_pct is not None and self.failed_pct <= MAX_FAILED_PCT,
                fmt(self.failed_pct),
            ),
            Check(
                f"availability >= {MIN_AVAILABILITY_PCT:.0f} %",
                self.availability_pct is not None and self.availability_pct >= MIN_AVAILABILITY_PCT,
                fmt(self.availability_pct),
            ),
            Check("no orphaned process", not self.orphans, ", ".join(self.orphans) or "0"),
            Check(
                "loop stops on SIGTERM with exit 0",
                self.loop_exit == 0,
                "killed"
                if self.loop_exit is None
                else f"exit {self.loop_exit}"
                + ("" if self.loop_stop_s is None else f" in {self.loop_stop_s:.1f} s"),
            ),
            Check(
                "destroy exits 0",
                self.destroy_exit == 0,
                "not run" if self.destroy_exit is None else f"exit {self.destroy_exit}",
            ),
            Check("load window completed", self.completed, "yes" if self.completed else "no"),
        ]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks())

    def to_json(
        self,
        samples: Sequence[Sample] = (),
        preempted_at: Sequence[float] = (),
        warned_at: Sequence[float] = (),
    ) -> Any:
        data = asdict(self)
        data["checks"] = [asdict(c) for c in self.checks()]
        data["passed"] = self.passed
        if samples:
            data["samples"] = [asdict(s) for s in samples]
        data["preempted_at_s"] = list(preempted_at)
        data["warned_at_s"] = list(warned_at)
        return data

    def table(self) -> str:
        def num(v: float | None, spec: str = ".2f", unit: str = "") -> str:
            return "n/a" if v is None else f"{v:{spec}}{unit}"

        rows = [
            ("load window", f"{self.duration_s:.0f} s"),
            ("availability (ready >= target)", num(self.availability_pct, ".2f", " %")),
            ("availability (LB up >= target)", num(self.serving_availability_pct, ".2f", " %")),
            ("requests", str(self.requests)),
            ("failed requests", f"{self.failed_requests} ({num(self.failed_pct, '.3f', ' %')})"),
            ("latency p50 / p90 / p99", " / ".join(num(v, ".1f") for v in self._lat()) + " ms"),
            ("cost vs on-demand", num(self.cost_pct, ".1f", " %")),
            ("preemptions (warnings)", f"{self.preemptions} ({self.warnings})"),
            ("capacity errors", str(self.capacity_errors)),
            ("ticks (failed)", f"{self.ticks} ({self.failed_ticks})"),
            ("tick p50 / p99", f"{num(self.tick_p50_s, '.1f')} / {num(self.tick_p99_s, '.1f')} s"),
            ("orphaned processes", str(len(self.orphans))),
        ]
        if self.errors:
            errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items()))
            rows.insert(5, ("request errors", errors))
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        lines += [f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _lat(self) -> tuple[float | None, float | None, float | None]:
        return self.p50_ms, self.p90_ms, self.p99_ms


def write_plot(
    samples: Sequence[Sample],
    preempted_at: Sequence[float],
    warned_at: Sequence[float],
    path: Path,
    title: str = "hedgeform soak",
) -> None:
    """Ready replicas by market (stacked) with the target, preemptions as markers, and failed
    requests per second on a second axis: one picture of how the loop rode the trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    fig, ax = plt.subplots(figsize=(12, 5))
    ax.stackplot(
        t,
        [s.ready_spot for s in samples],
        [s.ready_od for s in samples],
        labels=["ready spot", "ready on-demand"],
        colors=["C2", "C1"],
        alpha=0.8,
        step="post",
    )
    ax.step(t, [s.lb_up for s in samples], where="post", color="C0", lw=1, label="LB servers up")
    targets = [float("nan") if s.target is None else s.target for s in samples]
    ax.step(t, targets, where="post", color="k", ls="--", lw=1.2, label="target")
    top = max([s.ready for s in samples] + [s.lb_up for s in samples] + [1])
    for i, x in enumerate(warned_at):
        ax.axvline(x, color="C3", alpha=0.25, lw=0.8, label="warning" if i == 0 else None)
    if preempted_at:
        ax.plot(
            preempted_at, [top + 0.4] * len(preempted_at), "v", color="C3", ms=7,
            label="preempted",
        )  # fmt: skip
    ax.set_ylim(0, top + 1)
    ax.set_xlabel("seconds since the load started (wall)")
    ax.set_ylabel("replicas")
    ax2 = ax.twinx()
    ax2.bar(t, [s.failed for s in samples], width=1.0, color="C4", alpha=0.6, label="failed req/s")
    ax2.set_ylabel("failed requests per second")
    ax2.set_ylim(0, max([s.failed for s in samples] + [1]) * 3)
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(
        handles + h2, labels + l2, loc="upper center", bbox_to_anchor=(0.5, -0.12),
        fontsize=8, ncol=7, frameon=False,
    )  # fmt: skip
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
