"""Measuring a throughput profile against a running endpoint (issue 15, `hedgeform profile`).

For one GPU type and one request-size bucket, the highest request rate at which at least a
given share of requests is answered within the latency target: rates double from a start
until one misses, then bisect between the last that held and the first that missed. Each
probe is a seeded Poisson load of that rate (loadgen.run_load), so queues form as they do
with independent users. The search itself is pure (`highest_rate` takes the measurement as
a function); `measure_bucket` drives it with the load generator, which targets loopback
addresses only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reconciler.errors import SandboxError
from reconciler.sandbox.loadgen import run_load


@dataclass(frozen=True)
class Probe:
    rate_rps: float
    attainment: float  # share of the requests sent answered within the target


def highest_rate(
    measure: Callable[[float], float],
    attainment: float,
    *,
    start: float = 1.0,
    max_rate: float = 1_000.0,
    precision: float = 0.05,
    on_probe: Callable[[Probe], None] | None = None,
) -> float:
    """The highest rate (requests/s) with `measure(rate) >= attainment`, found by doubling
    from `start` (at most `max_rate`) and then bisecting until the bracket is within
    `precision` of its upper end (relative). 0.0 when even `start / 2**k` misses down to
    `start * precision`. Assumes attainment falls as the rate rises (a queue's behaviour)."""
    if not (0 < attainment <= 1 and 0 < start <= max_rate and 0 < precision < 1):
        raise SandboxError(
            "attainment must be in (0, 1], 0 < start <= max rate, precision in (0, 1)"
        )

    def holds(rate: float) -> bool:
        got = measure(rate)
        if on_probe is not None:
            on_probe(Probe(rate, got))
        return got >= attainment

    good, bad = 0.0, None
    rate = start
    while bad is None:
        if holds(rate):
            good = rate
            if rate >= max_rate:
                return rate
            rate = min(rate * 2, max_rate)
        else:
            bad = rate
    while bad - good > precision * bad:
        middle = (good + bad) / 2
        if middle < start * precision:
            break
        if holds(middle):
            good = middle
        else:
            bad = middle
    return good


def measure_bucket(
    url: str,
    *,
    input_words: int,
    output_tokens: int,
    slo_ms: float,
    attainment: float,
    duration_s: float,
    seed: int = 0,
    max_rate: float = 1_000.0,
    on_probe: Callable[[Probe], None] | None = None,
) -> float:
    """The highest rate (requests/s) one endpoint sustains for requests of `input_words`
    prompt words and `output_tokens` completion tokens (`highest_rate`, with each probe a
    `duration_s` Poisson load seeded with `seed`). 0.0 when the endpoint answers but never
    within `slo_ms` for `attainment` of the requests: a measurement (the type cannot serve
    the bucket within the SLO).

    SandboxError (one line) when the endpoint answers nothing: the first probe that sends a
    request gets no 200 reply at all (connection refused, timeouts, every reply an error),
    before any probe got one. The search then stops at once: its first probe's first request
    meets an idle endpoint, so a slower load would fail the same way, and a 0 would measure
    nothing. Also when no probe sends a request at all (`max_rate * duration_s` below 1)."""
    prompt = " ".join(["hello"] * max(1, input_words))
    answered = False

    def measure(rate: float) -> float:
        nonlocal answered
        result = run_load(
            url,
            rate,
            duration_s,
            prompt=prompt,
            max_tokens=output_tokens,
            slo_ms=slo_ms,
            poisson_seed=seed,
        )
        if result.successes:
            answered = True
        elif result.sent and not answered:
            first = next(iter(result.errors), "no reply")
            raise SandboxError(
                f"nothing answered at {result.url}: {first} ({result.sent} sent at {rate:g} "
                f"req/s, {input_words} words in, {output_tokens} tokens out, none answered "
                "200); no profile measured"
            )
        return result.slo_attainment or 0.0

    rate = highest_rate(
        measure,
        attainment,
        start=min(1.0, max_rate),
        max_rate=max_rate,
        on_probe=on_probe,
    )
    if not answered:
        raise SandboxError(
            f"no request sent to {url}: at most {max_rate:g} req/s for {duration_s:g} s is "
            "less than one request per probe; no profile measured"
        )
    return rate
