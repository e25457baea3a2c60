"""What an unattended loop shows: one JSON log record per tick, and Prometheus metrics.

The record carries the inputs (replicas by state, request rate, notices), the decision and
its reasons, the plan summary per stack and the durations, so a night's preemptions can be
read back tick by tick. Secrets never reach it: nothing here reads env values.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    start_http_server,
    write_to_textfile,
)
from prometheus_client import Counter as PromCounter
from pythonjsonlogger.json import JsonFormatter

from reconciler.engine.reconcile import PassResult
from reconciler.engine.serving import ServingCheck
from reconciler.policy import FailureKind


def json_logger(name: str, path: Path | None = None) -> logging.Logger:
    """A logger whose records are JSON lines on stdout (journald) and, if given, in a file."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers.clear()
    fmt = JsonFormatter("{asctime}{levelname}{message}", style="{", rename_fields={"asctime": "ts"})
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


def tick_record(tick: int, result: PassResult, check: ServingCheck | None = None) -> dict[str, Any]:
    d = result.decision
    observed, signals = result.observed, result.signals
    record: dict[str, Any] = {
        "tick": tick,
        "decision": {
            "target": d.target,
            "held": d.held,
            "replicas": sum(d.desired.values()),  # alive once this tick's changes apply
            "launches": [
                {"id": x.replica_id, "zone": x.zone, "market": x.market.value, "reason": x.reason}
                for x in d.launches
            ],
            "terminations": [
                {"id": x.replica_id, "zone": x.zone, "market": x.market.value, "reason": x.reason}
                for x in d.terminations
            ],
            "lb_members": list(d.lb_members),
            "reasons": list(d.reasons),
        },
        "plan": result.summary_line,
        "stacks": {
            o.stack: {
                "changed": o.changed,
                "applied": o.applied,
                "error": str(o.error) if o.error else None,
                "launch_failures": {k: v[0].value for k, v in o.launch_failures.items()},
            }
            for o in result.outcomes
        },
        "plan_file": str(result.plan_file) if result.plan_file else None,
        "orphans_stopped": result.orphans,
        "orphans_adopted": result.adopted,
        "durations": {k: round(v, 3) for k, v in result.durations.items()},
    }
    if check is not None:
        record["serving"] = {"ok": check.serving, "via": check.via, "detail": check.detail}
    if observed is not None:
        states = Counter(f"{r.market.value}/{r.state.value}" for r in observed.replicas)
        record["inputs"] = {"replicas": dict(sorted(states.items()))}
    if signals is not None:
        record.setdefault("inputs", {}).update(
            {
                "qps": None if signals.qps is None else round(signals.qps, 3),
                "notices": [
                    {"kind": n.kind.value, "replica": n.replica_id, "zone": n.zone}
                    for n in signals.notices
                ],
            }
        )
    return record


class LoopMetrics:
    """Prometheus metrics of one service's loop, on a port or written to a textfile."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        labels = ["service"]
        self.replicas = Gauge(
            "hedgeform_replicas",
            "Replicas by zone, market and state after the last tick",
            [*labels, "zone", "market", "state"],
            registry=self.registry,
        )
        self.target = Gauge(
            "hedgeform_target_replicas", "Autoscaler target", labels, registry=self.registry
        )
        self.preemptions = PromCounter(
            "hedgeform_preemptions", "Preemption notices handled", [*labels, "kind"],
            registry=self.registry,
        )  # fmt: skip
        self.capacity_errors = PromCounter(
            "hedgeform_capacity_errors", "Spot launches refused for capacity", [*labels, "zone"],
            registry=self.registry,
        )  # fmt: skip
        self.serving = Gauge(
            "hedgeform_endpoint_serving",
            "1 when requests through the load balancer to the probe path answered 200 after "
            "the last tick (or, where unreachable, the LB had a healthy target), else 0",
            labels,
            registry=self.registry,
        )
        self.tick_errors = PromCounter(
            "hedgeform_tick_errors", "Ticks that failed", labels, registry=self.registry
        )
        self.tick_seconds = Histogram(
            "hedgeform_tick_duration_seconds", "Whole reconcile pass", labels,
            registry=self.registry,
        )  # fmt: skip
        self.apply_seconds = Histogram(
            "hedgeform_apply_duration_seconds", "Terraform apply part of a pass", labels,
            registry=self.registry,
        )  # fmt: skip

    def observe(self, result: PassResult, check: ServingCheck | None = None) -> None:
        s, observed, signals = self.service, result.observed, result.signals
        self.target.labels(s).set(result.decision.target)
        if check is not None:
            self.serving.labels(s).set(1.0 if check.serving else 0.0)
        if observed is not None:
            self.replicas.clear()
            counts = Counter((r.zone, r.market.value, r.state.value) for r in observed.replicas)
            for (zone, market, state), n in counts.items():
                self.replicas.labels(s, zone, market, state).set(n)
        if signals is not None:
            for notice in signals.notices:
                self.preemptions.labels(s, notice.kind.value).inc()
        zones = {x.replica_id: x.zone for x in result.decision.launches}
        for o in result.outcomes:
            for rid, (kind, _) in o.launch_failures.items():
                if kind is FailureKind.CAPACITY:
                    self.capacity_errors.labels(s, zones.get(rid, "unknown")).inc()
        self.tick_seconds.labels(s).observe(result.durations.get("total_s", 0.0))
        if "apply_s" in result.durations:
            self.apply_seconds.labels(s).observe(result.durations["apply_s"])

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)

    def write_textfile(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
