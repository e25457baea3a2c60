"""What an unattended loop shows: one JSON log record per tick, and Prometheus metrics:
the loop's own, and the serving figures the load balancer counts per replica (on clouds per
target group or backend and zone; read at each scrape through the backend's
`replica_traffic`), with $/h by market.

The record carries the inputs (replicas by state, request rate, notices), the decision and
its reasons, the plan summary per stack and the durations, so a night's preemptions can be
read back tick by tick. Secrets never reach it: nothing here reads env values.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pythonjsonlogger.json import JsonFormatter

from reconciler.backends.base import ReplicaTraffic
from reconciler.cost import tick_rates
from reconciler.engine.reconcile import PassResult
from reconciler.engine.serving import ServingCheck
from reconciler.policy import Decision, FailureKind, Market, NoticeKind, Observation

REPLICA_LABELS = ["service", "replica", "zone", "market", "accelerator"]
TrafficSource = Callable[[], Mapping[str, ReplicaTraffic] | None]


class SyncedFileHandler(logging.FileHandler):
    """A JSON-lines log that survives `kill -9` and power loss record by record: each record
    is appended, flushed and fsync'd before `emit` returns. The file is opened at the first
    record (a command that logs nothing leaves none); a last line a crash cut short is ended
    first, so the next record starts a line of its own and only the torn one is unreadable
    (every reader skips a line that is not JSON)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self) -> Any:
        torn = False
        try:
            with open(self.baseFilename, "rb") as fh:
                if fh.seek(0, os.SEEK_END) > 0:
                    fh.seek(-1, os.SEEK_END)
                    torn = fh.read(1) != b"\n"
        except FileNotFoundError:
            pass
        stream = super()._open()
        if torn:
            stream.write("\n")
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if self.stream is not None:
            try:
                self.stream.flush()
                os.fsync(self.stream.fileno())
            except OSError:
                self.handleError(record)


def json_logger(name: str, path: Path | None = None, *, stdout: bool = True) -> logging.Logger:
    """A logger whose records are JSON lines on stdout (journald; not with `stdout=False`)
    and, if given, appended to a file (`SyncedFileHandler`: fsync'd record by record)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    close_handlers(logger)
    fmt = JsonFormatter("{asctime}{levelname}{message}", style="{", rename_fields={"asctime": "ts"})
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)] if stdout else []
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(SyncedFileHandler(path))
    for handler in handlers:
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


def close_handlers(logger: logging.Logger) -> None:
    """Detach and close the handlers of `logger` (its files are closed, not left to GC)."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def decision_json(d: Decision) -> dict[str, Any]:
    """A decision as the tick log records it: a tick's `decision`, a `DECIDED` record's
    `decided`."""
    return {
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
    }


DECIDED = "tick decided"  # the record a pass writes before Terraform applies its decision


def decided_record(tick: int, pass_id: str, decision: Decision, source: str) -> dict[str, Any]:
    """The tick log's record of a decision about to be applied (message `DECIDED`), written
    and fsync'd before Terraform changes anything: what the pass launches and terminates,
    and why. Its outcome follows as the pass's `tick` record (or `tick failed`) with the same
    `pass`; a `DECIDED` record no outcome names was cut short (kill -9, power loss) while
    applying. The decision is under `decided` (the `decision` object's shape), not
    `decision`: readers that take every record with a `decision` for a tick's outcome keep
    doing so. It carries no `cost`: `hedgeform cost` integrates the outcomes only."""
    return {"tick": tick, "pass": pass_id, "source": source, "decided": decision_json(decision)}


def tick_record(
    tick: int, result: PassResult, check: ServingCheck | None = None, now: float | None = None
) -> dict[str, Any]:
    """The tick log's record of one pass. Its `cost` ($/h by market at the prices the pass
    used, and `at`, the unix time) is what `hedgeform cost` integrates (reconciler/cost.py).
    `pass`: the pass's id, as its `DECIDED` record named it (when it wrote one)."""
    d = result.decision
    observed, signals = result.observed, result.signals
    record: dict[str, Any] = {
        "tick": tick,
        "decision": decision_json(d),
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
    if result.pass_id:
        record["pass"] = result.pass_id
    # For `hedgeform status` (engine/status_view.py): the rollout step, and why each failed
    # launch failed (the stacks' entries above keep only its kind).
    if result.rollout:
        record["rollout"] = result.rollout
    failure_reasons = {k: v[1][:300] for o in result.outcomes for k, v in o.launch_failures.items()}
    if failure_reasons:
        record["launch_failure_reasons"] = failure_reasons
    if check is not None:
        record["serving"] = {"ok": check.serving, "via": check.via, "detail": check.detail}
    if observed is not None:
        states = Counter(f"{r.market.value}/{r.state.value}" for r in observed.replicas)
        record["inputs"] = {"replicas": dict(sorted(states.items()))}
        at = time.time() if now is None else now
        record["cost"] = {"at": round(at, 3), **tick_rates(observed.replicas, observed.zones)}
        # READY replica ids: with decision.lb_members, the ready replicas serving (status's
        # availability over the last hour).
        record["inputs"]["ready"] = sorted(r.id for r in observed.replicas if r.ready)
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


def cost_per_hour(observation: Observation) -> dict[str, float]:
    """Hourly price of the replicas that bill now, by market ("spot", "on_demand"; 0 where
    none runs), at the prices the policy decides with ($/h on clouds, nominal on the
    sandbox): reconciler/cost.py's rule (`tick_rates`), so the gauge, the tick log and
    `hedgeform cost` agree. A replica no offer prices (its zone retired) is left out here
    and counted in the tick record's `cost.unpriced`."""
    rates = tick_rates(observation.replicas, observation.zones)
    return {m.value: float(rates[m.value]) for m in Market}


class ServingCollector(Collector):
    """Per-replica serving metrics mirrored from the load balancer's own counters, read at
    each scrape (or textfile write) from `source` (the backend's `replica_traffic`).

    The load balancer keeps the totals, so they are exported as counters the standard way
    for external counters (CounterMetricFamily), not incremented here: a total that falls
    (a replica re-added, HAProxy restarted) is a counter reset, which `rate()` handles.
    Labels come from the last tick's observation (`labels`); a member the tick did not see
    carries "unknown". A cloud's figures are per group of targets and zone: `replica` and
    `market` are empty there (a target group holds both markets), `zone` and `accelerator`
    come with the figures.

    A source that fails makes `hedgeform_lb_stats_up` 0 for that scrape and is said once
    per distinct reason on `logger` (a warning line), never more often: scrapes come every
    few seconds."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.source: TrafficSource | None = None
        self.logger: logging.Logger | None = None
        self._said = ""  # the last failure said (cleared by a good read)
        # replica id -> (zone, market, accelerator), replaced whole after each tick
        self.labels: Mapping[str, tuple[str, str, str]] = {}

    def _families(self) -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        counters: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "requests": CounterMetricFamily(
                "hedgeform_replica_requests",
                "HTTP requests the load balancer sent to the replica (health checks excluded)",
                labels=REPLICA_LABELS,
            ),
            "responses": CounterMetricFamily(
                "hedgeform_replica_responses",
                "HTTP responses from the replica through the load balancer, by status class",
                labels=[*REPLICA_LABELS, "code"],
            ),
            "connection_errors": CounterMetricFamily(
                "hedgeform_replica_connection_errors",
                "Requests whose connection from the load balancer to the replica failed",
                labels=REPLICA_LABELS,
            ),
            "response_errors": CounterMetricFamily(
                "hedgeform_replica_response_errors",
                "Responses the replica aborted or refused (a closed connection included)",
                labels=REPLICA_LABELS,
            ),
        }
        gauges = {
            "response_time": GaugeMetricFamily(
                "hedgeform_replica_response_time_seconds",
                "Average time to the replica's first response byte over its last 1024 "
                "requests (HAProxy rtime): an average, not a quantile",
                labels=REPLICA_LABELS,
            ),
            "total_time": GaugeMetricFamily(
                "hedgeform_replica_total_time_seconds",
                "Average whole-request time at the load balancer over the replica's last "
                "1024 requests (HAProxy ttime): an average, not a quantile",
                labels=REPLICA_LABELS,
            ),
            "quantiles": GaugeMetricFamily(
                "hedgeform_replica_response_time_quantile_seconds",
                "Quantiles of the time to the first response byte over the newest settled "
                "minute, as the cloud computes them (AWS TargetResponseTime p50/p90/p99); "
                "per target group and zone, not summable across them",
                labels=[*REPLICA_LABELS, "quantile"],
            ),
            "up": GaugeMetricFamily(
                "hedgeform_lb_stats_up",
                "1 when the load balancer's per-replica figures were read at this scrape, "
                "0 when they could not be (not running, or not read on this cloud)",
                labels=["service"],
            ),
        }
        return {**counters, **gauges}

    def describe(self) -> Iterable[Metric]:
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        families = self._families()
        traffic = self._read()
        families["up"].add_metric([self.service], 0.0 if traffic is None else 1.0)
        labels = self.labels
        for name, t in sorted((traffic or {}).items()):
            if t.zone is not None:  # a cloud's group of targets in a zone
                key = [self.service, "", t.zone, "", t.accelerator]
            else:
                zone, market, accelerator = labels.get(name, ("unknown", "unknown", "unknown"))
                key = [self.service, name, zone, market, accelerator]
            families["requests"].add_metric(key, t.requests)
            for code, n in sorted(t.responses.items()):
                families["responses"].add_metric([*key, code], n)
            if t.connection_errors is not None:
                families["connection_errors"].add_metric(key, t.connection_errors)
            if t.response_errors is not None:
                families["response_errors"].add_metric(key, t.response_errors)
            if t.response_time_s is not None:
                families["response_time"].add_metric(key, t.response_time_s)
            if t.total_time_s is not None:
                families["total_time"].add_metric(key, t.total_time_s)
            for q, seconds in sorted(t.response_time_quantiles_s.items()):
                families["quantiles"].add_metric([*key, q], seconds)
        return list(families.values())

    def _read(self) -> Mapping[str, ReplicaTraffic] | None:
        if self.source is None:
            return None
        try:
            traffic = self.source()
        except Exception as exc:  # a scrape must not fail because the LB did not answer
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if reason != self._said and self.logger is not None:
                self.logger.warning(f"serving metrics not read: {reason}")
            self._said = reason
            return None
        self._said = ""
        return traffic


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
        self.fallbacks = PromCounter(
            "hedgeform_fallbacks",
            "On-demand launches SpotHedge decided as fallback for missing ready spot replicas",
            [*labels, "zone"],
            registry=self.registry,
        )
        self.cost = Gauge(
            "hedgeform_cost_usd_per_hour",
            "Hourly price of the replicas that run after the last tick, by market "
            "(the prices the policy decides with; nominal on the sandbox)",
            [*labels, "market"],
            registry=self.registry,
        )
        self.drift_checks = PromCounter(
            "hedgeform_drift_checks", "Drift checks the loop ran (run --drift-every)", labels,
            registry=self.registry,
        )  # fmt: skip
        self.drift_found = PromCounter(
            "hedgeform_drift_found",
            "Drift checks that found resources changed outside Terraform or unknown instances",
            labels,
            registry=self.registry,
        )
        self.drift_items = Gauge(
            "hedgeform_drift_items",
            "Resources changed outside Terraform plus unknown instances at the last drift check",
            labels,
            registry=self.registry,
        )
        self.tick_errors.labels(service)
        for kind in NoticeKind:  # every series from the start, so increase() sees the first
            self.preemptions.labels(service, kind.value)
        self.traffic = ServingCollector(service)
        # The GPU type named for a replica whose pool names none (set by the loop each tick).
        self.accelerator = ""
        self.registry.register(self.traffic)

    def watch_traffic(self, source: TrafficSource, logger: logging.Logger | None = None) -> None:
        """Read per-replica serving figures from `source` at each scrape; say on `logger`
        why they could not be read (once per reason)."""
        self.traffic.source = source
        self.traffic.logger = logger

    def observe_drift(self, changed: int, unknown: int) -> None:
        """One drift check's outcome (engine/drift.py): counts of changed resources and
        unknown instances."""
        s = self.service
        self.drift_checks.labels(s).inc()
        if changed or unknown:
            self.drift_found.labels(s).inc()
        self.drift_items.labels(s).set(changed + unknown)

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
            for market, usd in cost_per_hour(observed).items():
                self.cost.labels(s, market).set(usd)
            for offer in observed.zones:
                self.fallbacks.labels(s, offer.zone)  # each place's series, at 0 until one
                self.capacity_errors.labels(s, offer.zone)
            types = {z.zone: z.accelerator for z in observed.zones}
            self.traffic.labels = {
                r.id: (r.zone, r.market.value, types.get(r.zone) or self.accelerator)
                for r in observed.replicas
            }
        if signals is not None:
            for notice in signals.notices:
                self.preemptions.labels(s, notice.kind.value).inc()
        for launch in result.decision.launches:
            if launch.market is Market.ON_DEMAND and "fallback" in launch.reason:
                self.fallbacks.labels(s, launch.zone).inc()
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
