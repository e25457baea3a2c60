"""A service's Hedgeform-only settings: `services/<name>.hedgeform.yaml` beside its SkyServe
file, so that file stays valid SkyServe YAML (issue 15).

    mix:
      profile:                 # Mélange's shape (spec/profile.py), without prices
        gpus:
          L4: {max_rps: [[6, 2], [3, 1]]}
          A10G: {max_rps: [[10, 4], [5, 2]]}
        distribution: [[0.5, 0.2], [0.2, 0.1]]
      max_utilization: 0.8     # headroom: load each replica to at most this share
      caps: {A10G: 4}          # at most this many replicas of a type
    changes: review            # auto (default) or review: who may change the service

`profile` gives, per GPU type of the spec's accelerator set, the highest request rate one
replica sustains within the latency SLO per request-size bucket, and how requests spread over
the buckets; prices are not part of it (the policy uses each type's live offers). Neither
HAProxy nor a cloud load balancer routes by request size, so a type's capacity is the
size-oblivious one: `1 / sum_b d_b / max_rps_b` requests/s (`MixSettings.serves`). Without a
profile the per-accelerator `target_qps_per_replica` gives each type's capacity, as in
SkyServe. Errors: SpecError naming the file and the field path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import ProfileError
from reconciler.spec.profile import Profile, parse_profile, yaml_number_hint
from reconciler.spec.service import MAX_TARGET_QPS, MIN_TARGET_QPS

SIDECAR_SUFFIX = ".hedgeform.yaml"
AUTO, REVIEW = "auto", "review"
CHANGES = (AUTO, REVIEW)  # `changes:`: who may change the service without review
PLACEHOLDER_PRICE = 1.0  # parse_profile wants a price; the policy prices types from offers


@dataclass(frozen=True)
class MixSettings:
    """`mix:` of the sidecar. `profile` None: per-type capacity from the spec's targets."""

    profile: Profile | None = None
    max_utilization: float = 1.0
    caps: Mapping[str, int] = field(default_factory=dict)  # by upper-case type name

    def serves(self, accelerator: str) -> float | None:
        """Requests/s one replica of `accelerator` sustains within the SLO for the profile's
        request mix, size-oblivious (module docstring), before headroom; None without a
        profile or for a type it does not name. Matched case-insensitively."""
        if self.profile is None:
            return None
        gpu = next((g for g in self.profile.gpus if g.name.upper() == accelerator.upper()), None)
        if gpu is None:
            return None
        return oblivious_capacity(gpu.max_rps, self.profile.distribution)

    def cap(self, accelerator: str) -> int | None:
        return self.caps.get(accelerator.upper())


def oblivious_capacity(
    max_rps: Sequence[Sequence[float]], distribution: Sequence[Sequence[float]]
) -> float:
    """Requests/s one instance serves when every request is drawn from `distribution`: the
    time one request takes on average is `sum_b d_b / max_rps_b`; 0 when a bucket that gets
    requests cannot be served (max_rps 0)."""
    load = 0.0
    for rps_row, share_row in zip(max_rps, distribution, strict=True):
        for rps, share in zip(rps_row, share_row, strict=True):
            if share > 0:
                if rps <= 0:
                    return 0.0
                load += share / rps
    return 1.0 / load if load > 0 else 0.0


def parse_sidecar(data: Any, accelerators: Sequence[str]) -> MixSettings:
    """The sidecar's settings, checked against the spec's accelerator names (`accelerators`).
    ProfileError (one line, the field path) for anything unusable."""
    if data is None:
        return MixSettings()
    if not isinstance(data, Mapping):
        raise ProfileError("expected a mapping with `mix:` or `changes:`")
    unknown = sorted(set(data) - {"mix", "changes"})
    if unknown:
        raise ProfileError(f"{unknown[0]}: unknown field (expected mix, changes)")
    mix = data.get("mix")
    if mix is None:
        return MixSettings()
    if not isinstance(mix, Mapping):
        raise ProfileError("mix: expected a mapping of profile, max_utilization, caps")
    unknown = sorted(set(mix) - {"profile", "max_utilization", "caps"})
    if unknown:
        raise ProfileError(
            f"mix.{unknown[0]}: unknown field (expected profile, max_utilization, caps)"
        )
    names = {a.upper(): a for a in accelerators}
    shown = ", ".join(accelerators) or "none"

    def known(name: object, where: str) -> str:
        if not isinstance(name, str) or name.upper() not in names:
            raise ProfileError(
                f"{where}: {name!r} is not an accelerator of the service "
                f"(resources.accelerators: {shown})"
            )
        return name.upper()

    profile = None
    if mix.get("profile") is not None:
        profile = _profile(mix["profile"], known)
        given = {g.name.upper() for g in profile.gpus}
        missing = [a for a in accelerators if a.upper() not in given]
        if missing:
            raise ProfileError(
                f"mix.profile.gpus: no figures for {', '.join(missing)} (the service may run "
                "every accelerator of its set)"
            )
    utilization = mix.get("max_utilization", 1.0)
    if (
        isinstance(utilization, bool)
        or not isinstance(utilization, int | float)
        or not 0 < utilization <= 1
    ):
        raise ProfileError(
            f"mix.max_utilization: {utilization!r} is not a share in (0, 1]"
            + yaml_number_hint(utilization)
        )
    caps_raw = mix.get("caps")
    if caps_raw is None:  # `caps:` with nothing under it: no caps
        caps_raw = {}
    if not isinstance(caps_raw, Mapping):
        raise ProfileError("mix.caps: expected a mapping of accelerator to a replica count")
    caps: dict[str, int] = {}
    for name, cap in caps_raw.items():
        key = known(name, f"mix.caps.{name}")
        if key in caps:
            raise ProfileError(f"mix.caps.{name}: {key} is capped more than once")
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ProfileError(f"mix.caps.{name}: {cap!r} is not a whole number of replicas")
        caps[key] = cap
    return MixSettings(profile, float(utilization), caps)


def parse_changes(data: Any) -> str:
    """The sidecar's `changes:`, who may change the service without review (issue 16):
    `auto` (the default: the unattended loop rolls out a changed service file itself) or
    `review` (it applies only what the policy owns and holds a changed service or sidecar
    file until a reviewed plan of it is applied, `hedgeform apply --plan`; docs/review.md).
    ProfileError (one line) for another value."""
    value = data.get("changes", AUTO) if isinstance(data, Mapping) else AUTO
    if value not in CHANGES:
        raise ProfileError(f"changes: {value!r} is not one of {', '.join(CHANGES)}")
    return str(value)


def _profile(raw: Any, known: Any) -> Profile:
    """`mix.profile` as a Profile. Each type's entry is checked here, before parse_profile
    (which wants a price): its errors would ask for the `usd_per_hour` a sidecar refuses."""
    if not isinstance(raw, Mapping):
        raise ProfileError("mix.profile: expected a mapping with gpus (and distribution)")
    if not isinstance(raw.get("gpus"), Mapping):
        raise ProfileError("mix.profile.gpus: expected a mapping of accelerator to its max_rps")
    gpus: dict[str, Any] = {}
    seen: set[str] = set()
    for name, entry in raw["gpus"].items():
        at = f"mix.profile.gpus.{name}"
        key = known(name, at)
        if key in seen:  # serves() would read the first silently
            raise ProfileError(f"{at}: {key} is given more than once")
        seen.add(key)
        if not isinstance(entry, Mapping):
            raise ProfileError(f"{at}: expected a mapping with max_rps")
        if "usd_per_hour" in entry:
            raise ProfileError(
                f"{at}.usd_per_hour: prices come from the clouds' offers "
                "(live spot, the catalog's on-demand); leave it out"
            )
        extra = sorted(str(k) for k in entry if k != "max_rps")
        if extra:
            raise ProfileError(f"{at}.{extra[0]}: unknown field (expected max_rps)")
        if "max_rps" not in entry:
            raise ProfileError(f"{at}.max_rps: missing")
        gpus[name] = {**entry, "usd_per_hour": PLACEHOLDER_PRICE}
    profile = parse_profile({**raw, "gpus": gpus}, "mix.profile")
    for gpu in profile.gpus:
        # the bounds of a replica's target_qps_per_replica (spec/service.py): outside them a
        # figure is a typo, and the policy's units (the smallest type's requests/s,
        # policy/mixed.py) would span more than a float's range between types
        odd = [
            r for row in gpu.max_rps for r in row if r and not MIN_TARGET_QPS <= r <= MAX_TARGET_QPS
        ]
        if odd:
            raise ProfileError(
                f"mix.profile.gpus.{gpu.name}.max_rps: {odd[0]:g} is not a replica's "
                f"requests/s: give 0 (cannot within the SLO) or {MIN_TARGET_QPS:g} to "
                f"{MAX_TARGET_QPS:g}"
            )
        if oblivious_capacity(gpu.max_rps, profile.distribution) <= 0:
            raise ProfileError(
                f"mix.profile.gpus.{gpu.name}.max_rps: 0 for a bucket the distribution sends "
                "requests to; no load balancer here routes by request size, so every type "
                "must serve every bucket"
            )
    return profile
