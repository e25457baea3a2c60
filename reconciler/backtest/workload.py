"""Request-rate workloads that drive the autoscaler in a backtest.

`maf` is the Azure Functions trace (requests per minute), scaled so that its mean load needs
`target` replicas: target_qps_per_replica = mean qps / target. The window's offset into the
trace follows the window's offset into the spot trace, wrapping around.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Workload:
    per_minute_qps: np.ndarray
    qps_per_replica: float
    max_replicas: int

    def qps_per_tick(self, start_tick: int, ticks: int, tick_seconds: int) -> np.ndarray:
        minutes = (np.arange(start_tick, start_tick + ticks) * tick_seconds) // 60
        return self.per_minute_qps[minutes % len(self.per_minute_qps)]


def load_maf(path: Path, target: int) -> Workload:
    from reconciler.errors import BacktestError

    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise BacktestError(f"{path}: cannot read workload ({exc.strerror})") from exc
    try:
        counts = [float(row[1]) for row in rows[1:] if row]
    except (IndexError, ValueError) as exc:
        raise BacktestError(
            f"{path}: not a requests-per-minute CSV (expected 'minute,requests' rows)"
        ) from exc
    if not counts:
        raise BacktestError(f"{path}: the workload has no rows")
    qps = np.asarray(counts) / 60.0
    per_replica = float(qps.mean()) / target
    peak = math.ceil(float(qps.max()) / per_replica) if per_replica > 0 else target
    return Workload(qps, per_replica, max(target, min(peak, 4 * target)))
