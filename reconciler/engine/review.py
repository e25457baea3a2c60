"""Who may change a service without review (issue 16): the sidecar's `changes:`.

`auto` (the default) is what the unattended loop always did: a changed service file is read
at the next tick and rolled out. Under `review`, the loop applies on its own only what the
policy owns with the spec it runs (replica counts, placement, on-demand cover, preemption
replacement, load balancer membership: every pass's decision) and holds a changed service or
sidecar file until a reviewed plan of it is applied (`hedgeform plan --out DIR`, then
`hedgeform apply --plan DIR`, engine/saved_plans.py), which records the reviewed texts in the
service's record (`Record.approved`). Until then the loop keeps running the recorded texts,
so preemptions are still handled, and says what it holds in each tick's log record and in
`hedgeform status`.

Only a pass under `review` records texts, so a record that keeps some is under `review`
(even if those texts no longer load: it fails closed): a file that switches `review` to
`auto` is itself a change to review, applied by a reviewed plan, whose pass records none.
With no recorded texts yet (a new service, or a record written before this existed), a
file whose spec digest is the service's current version's is taken as reviewed (it is what
runs); otherwise nothing is approved and the loop holds every pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.engine.state_store import Record
from reconciler.errors import HedgeformError
from reconciler.spec.fingerprint import fingerprint
from reconciler.spec.loading import load_spec_texts
from reconciler.spec.model import ServiceSpec
from reconciler.spec.sidecar import REVIEW, SIDECAR_SUFFIX


@dataclass(frozen=True)
class Review:
    """What a loop should run this tick. `texts`: the service texts to run (None: hold the
    whole pass, nothing is approved); `held`: one line saying what waits for review (None:
    nothing does)."""

    texts: Mapping[str, str] | None
    held: str | None = None


def review(spec_file: Path, file_texts: Mapping[str, str] | None, record: Record) -> Review:
    """The loop's choice for a service whose file now holds `file_texts` (None: unreadable)
    and whose record is `record` (module docstring). Never raises for a bad file: under
    `review` an unloadable file is a held change like any other."""
    service = spec_file.stem
    approved = dict(record.approved)
    if mode(spec_file, file_texts, record) != REVIEW:
        return Review(file_texts)
    if approved:
        if file_texts == approved:
            return Review(approved)
        return Review(approved, _held_line(service, spec_file, file_texts, approved, record))
    if file_texts is not None and record.memory.versions:
        spec = _spec(spec_file, file_texts)
        if spec is not None and fingerprint(spec) == record.memory.versions[-1].fingerprint:
            return Review(file_texts)  # what runs now: taken as reviewed
    return Review(
        None,
        f"{spec_file.name}: no reviewed version of {service} is recorded yet (changes: "
        f"review): nothing is applied until one is: `hedgeform plan {service} --out DIR`, "
        f"then `hedgeform apply {service} --plan DIR`",
    )


def mode(spec_file: Path, file_texts: Mapping[str, str] | None, record: Record) -> str:
    """`auto` or `review`: `review` whenever the record keeps reviewed texts (only a pass
    under `review` records them, so this holds even if they no longer load: it fails
    closed), else what the file says (module docstring)."""
    if record.approved:
        return REVIEW
    return _mode(spec_file, file_texts or {})


def held_change(
    spec_file: Path, file_texts: Mapping[str, str] | None, record: Record
) -> str | None:
    """The line `status` and the tick log show while a change waits for review, else None."""
    return review(spec_file, file_texts, record).held


def _held_line(
    service: str,
    spec_file: Path,
    file_texts: Mapping[str, str] | None,
    approved: Mapping[str, str],
    record: Record,
) -> str:
    version = record.memory.version
    sidecar = f"{spec_file.stem}{SIDECAR_SUFFIX}"
    if file_texts is None:
        what = f"{spec_file.name} or {sidecar} cannot be read"
    else:
        names = {"service": spec_file.name, "sidecar": sidecar}
        moved = [names[k] for k in ("service", "sidecar") if file_texts.get(k) != approved.get(k)]
        what = f"{' and '.join(moved)} changed"
    return (
        f"{what} since the reviewed v{version} (changes: review): held until a reviewed plan "
        f"is applied: `hedgeform plan {service} --out DIR`, then `hedgeform apply {service} "
        "--plan DIR`"
    )


def _spec(spec_file: Path, texts: Mapping[str, str]) -> ServiceSpec | None:
    try:
        return load_spec_texts(spec_file, texts)
    except HedgeformError:
        return None


def _mode(spec_file: Path, texts: Mapping[str, str]) -> str:
    spec = _spec(spec_file, texts) if texts else None
    return spec.changes if spec is not None else "auto"
