"""In-memory NoticeSource / MetricsSource / PriceSource for the reconciler's unit tests.

Each records its calls and can be told to fail, so tests can check that the reconciler holds
(rather than crashes or scales on nothing) when a cloud API is down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from reconciler.errors import AdapterError
from reconciler.policy.signals import Notice


class _Failing:
    def __init__(self) -> None:
        self.errors: list[Exception] = []
        self.calls: list[object] = []

    def fail_next(self, error: Exception | str = "injected failure", times: int = 1) -> None:
        """The next `times` calls raise `error` (a message becomes an AdapterError)."""
        exc = AdapterError(error) if isinstance(error, str) else error
        self.errors.extend([exc] * times)

    def _maybe_fail(self) -> None:
        if self.errors:
            raise self.errors.pop(0)


class FakeNoticeSource(_Failing):
    """Queued notices, each returned by exactly one poll (like an acknowledged queue)."""

    def __init__(self, notices: Iterable[Notice] = ()) -> None:
        super().__init__()
        self.pending: list[Notice] = list(notices)

    def push(self, *notices: Notice) -> None:
        self.pending.extend(notices)

    def poll(self) -> list[Notice]:
        self.calls.append(("poll",))
        self._maybe_fail()  # a failed poll consumes nothing, as an unacknowledged queue
        out, self.pending = self.pending, []
        return out


class FakeMetricsSource(_Failing):
    """A scripted request rate: one value for every call, or a list consumed in order (the
    last value repeats)."""

    def __init__(self, rates: float | Sequence[float | None] | None = None) -> None:
        super().__init__()
        self.rates: list[float | None] = (
            list(rates) if isinstance(rates, Sequence) else [rates]
        ) or [None]

    def request_rate(self, now: float) -> float | None:
        self.calls.append(("request_rate", now))
        self._maybe_fail()
        return self.rates.pop(0) if len(self.rates) > 1 else self.rates[0]


class FakePriceSource(_Failing):
    def __init__(self, prices: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.prices = dict(prices or {})

    def spot_prices(self, zones: Sequence[str]) -> dict[str, float]:
        self.calls.append(("spot_prices", tuple(zones)))
        self._maybe_fail()
        return {z: p for z, p in sorted(self.prices.items()) if not zones or z in zones}
