"""Request rate summed from the replicas' own Prometheus counters.

For load balancers that cannot count HTTP requests (Azure's Standard LB is layer 4) or
clusters without LB metrics: scrape each replica's `/metrics` and difference a request
counter over ~60 s. vLLM exports `vllm:request_success_total`, the default.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping

import requests

DEFAULT_COUNTER = "vllm:request_success_total"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def counter_total(text: str, name: str) -> float | None:
    """Sum of every sample of counter `name` (all label sets) in Prometheus text format."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            try:
                total += float(match.group(3))
            except ValueError:
                continue
            found = True
    return total if found else None


class ReplicaMetricsSource:
    """MetricsSource over replica endpoints (replica id -> base URL, re-read every call).

    A replica whose scrape fails is left out of this window; a replica first seen inside the
    window counts from zero (it started recently); a counter that went down restarted. None
    until two scrapes at least `min_span` apart exist, or when no replica answers.
    """

    def __init__(
        self,
        endpoints: Callable[[], Mapping[str, str]],
        *,
        counter: str = DEFAULT_COUNTER,
        path: str = "/metrics",
        window: float = 60.0,
        min_span: float = 10.0,
        timeout: float = 2.0,
        session: requests.Session | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.counter = counter
        self.path = path
        self.window = window
        self.min_span = min_span
        self.timeout = timeout
        self.session = session or requests.Session()
        self._samples: deque[tuple[float, dict[str, float]]] = deque()

    def scrape(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for replica, base in sorted(self.endpoints().items()):
            try:
                response = self.session.get(base.rstrip("/") + self.path, timeout=self.timeout)
            except requests.RequestException:
                continue
            if response.status_code != 200:
                continue
            value = counter_total(response.text, self.counter)
            if value is not None:
                totals[replica] = value
        return totals

    def request_rate(self, now: float) -> float | None:
        totals = self.scrape()
        if not totals:
            return None
        self._samples.append((now, totals))
        # Keep the newest sample at least `window` old as the baseline, and nothing older.
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        base_at, base = self._samples[0]
        span = now - base_at
        if span < self.min_span:
            return None
        delta = 0.0
        for replica, value in totals.items():
            before = base.get(replica, 0.0)
            delta += value - before if value >= before else value
        return delta / span
