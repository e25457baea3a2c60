"""A constant-rate load generator for the sandbox: sends `POST /v1/completions` at a fixed rate
(open loop: a slow server does not slow the sender down), evenly spaced or as a seeded Poisson
process, and reports successes, failures, latency percentiles and, given a latency target,
the share of requests answered within it (SLO attainment). It only targets loopback
addresses, so it cannot be aimed at anyone else.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import requests

from reconciler.errors import SandboxError
from reconciler.readiness import pinned_session

MAX_CONCURRENCY = 256
MAX_REQUESTS = 1_000_000
SATURATED = "client saturated (too many requests in flight)"


@dataclass(frozen=True)
class LoadResult:
    url: str
    target_qps: float
    duration_s: float
    sent: int
    successes: int
    failures: int
    errors: dict[str, int]
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    achieved_qps: float
    elapsed_s: float
    per_second: list[tuple[int, int]] = field(default_factory=list)
    slo_ms: float | None = None  # the latency target, if one was given
    within_slo: int = 0  # requests answered 200 within `slo_ms`

    @property
    def success_rate(self) -> float:
        return self.successes / self.sent if self.sent else 0.0

    @property
    def slo_attainment(self) -> float | None:
        """Share of the requests sent that were answered 200 within `slo_ms` (a failed or
        unsent request misses it); None without a target."""
        if self.slo_ms is None:
            return None
        return self.within_slo / self.sent if self.sent else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_second"] = [list(p) for p in self.per_second]
        data["success_rate"] = self.success_rate
        data["slo_attainment"] = self.slo_attainment
        return data


def completions_url(url: str) -> str:
    """Validate that `url` targets loopback and return the completions endpoint: a base URL
    gets `/v1/completions`, a URL with another path is used as given."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SandboxError(f"invalid URL {url!r}: expected http://127.0.0.1:PORT")
    host = parts.hostname
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if not loopback:
        raise SandboxError(
            f"refusing to send load to {host}: the sandbox load generator only targets "
            "loopback (127.0.0.0/8, localhost, ::1)"
        )
    path = parts.path if parts.path not in ("", "/") else "/v1/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def run_load(
    url: str,
    qps: float,
    duration_s: float,
    timeout_s: float = 10.0,
    *,
    model: str = "sandbox-model",
    prompt: str = "Hello from the sandbox load generator",
    max_tokens: int = 16,
    max_concurrency: int = MAX_CONCURRENCY,
    headers: Mapping[str, str] | None = None,
    slo_ms: float | None = None,
    poisson_seed: int | None = None,
    cacert: str | None = None,
) -> LoadResult:
    """Send `qps * duration_s` requests and wait for them all (`headers`, e.g. an
    `Authorization` for a replica that wants an API key, go with each). Sending times are
    evenly spaced, or with `poisson_seed` a Poisson process of rate `qps` (exponential gaps
    from numpy's generator seeded with it: the same seed sends at the same times), which is
    how independent users arrive and what makes queues form below capacity. `slo_ms` counts
    the requests answered within that many milliseconds (`LoadResult.slo_attainment`).
    `cacert`: an https URL's certificate is verified against this file's certificates only
    (a `service.tls` certfile: readiness.pinned_session).

    When `max_concurrency` requests are already in flight, a request is not sent and counts as
    a failure (`client saturated`), so the offered rate stays honest instead of silently
    dropping."""
    target = completions_url(url)
    if not (qps > 0 and duration_s > 0 and timeout_s > 0):
        raise SandboxError("qps, duration and timeout must be > 0")
    if slo_ms is not None and not slo_ms > 0:
        raise SandboxError(f"the latency target must be > 0 ms, got {slo_ms}")
    total = math.floor(qps * duration_s + 1e-9)
    if total > MAX_REQUESTS:
        raise SandboxError(f"{total} requests is too many for one run (max {MAX_REQUESTS})")
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens}
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(max(1, max_concurrency))
    local = threading.local()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    seconds = max(1, math.ceil(duration_s))
    per_second = [[0, 0] for _ in range(seconds)]

    def record(bucket: int, ok: bool, error: str | None, latency_ms: float) -> None:
        with lock:
            per_second[min(bucket, seconds - 1)][0 if ok else 1] += 1
            if ok:
                latencies.append(latency_ms)
            elif error is not None:
                errors[error] += 1

    def send(bucket: int) -> None:
        try:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = (
                    pinned_session(cacert) if cacert is not None else requests.Session()
                )
                session.trust_env = False  # never route loopback load through an env proxy
            start = time.perf_counter()
            try:
                resp = session.post(target, json=body, timeout=timeout_s, headers=headers)
                elapsed = (time.perf_counter() - start) * 1000
                if resp.status_code == 200:
                    record(bucket, True, None, elapsed)
                else:
                    record(bucket, False, f"HTTP {resp.status_code}", elapsed)
            except requests.RequestException as exc:
                record(bucket, False, type(exc).__name__, 0.0)
        finally:
            slots.release()

    # Worker threads persist, so each keeps its HTTP session (keep-alive) across requests.
    if poisson_seed is None:
        offsets = [i / qps for i in range(total)]
    else:
        gaps = np.random.default_rng(poisson_seed).exponential(1.0 / qps, total)
        offsets = [float(t) for t in np.concatenate(([0.0], np.cumsum(gaps)[:-1]))][:total]
    with ThreadPoolExecutor(max_workers=max(1, max_concurrency)) as pool:
        t0 = time.perf_counter()
        for offset in offsets:
            delay = t0 + offset - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            bucket = int(offset)
            if not slots.acquire(blocking=False):
                record(bucket, False, SATURATED, 0.0)
                continue
            pool.submit(send, bucket)
    elapsed_s = time.perf_counter() - t0
    successes = len(latencies)
    within = sum(1 for ms in latencies if slo_ms is not None and ms <= slo_ms)
    return LoadResult(
        url=target,
        target_qps=qps,
        duration_s=duration_s,
        sent=total,
        successes=successes,
        failures=total - successes,
        errors=dict(errors),
        p50_ms=_percentile(latencies, 50),
        p90_ms=_percentile(latencies, 90),
        p99_ms=_percentile(latencies, 99),
        achieved_qps=round(successes / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        elapsed_s=round(elapsed_s, 3),
        per_second=[(ok, fail) for ok, fail in per_second],
        slo_ms=slo_ms,
        within_slo=within,
    )
