"""The service spec: a SkyServe service YAML loaded into validated, frozen data.

The names below are loaded on first use (PEP 562): importing `reconciler.spec.model`, as the
pure policy does, must not load the YAML loader, the file system or anything else of
`loading` (tests/policy/test_purity_at_runtime.py holds it to that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.errors import SpecError
    from reconciler.spec.loading import load_spec, parse_spec
    from reconciler.spec.model import (
        CLOUDS,
        LOAD_BALANCING_POLICIES,
        SPOT_PLACERS,
        Accelerator,
        Location,
        ReadinessProbe,
        ReplicaPolicy,
        Resources,
        ServiceSection,
        ServiceSpec,
    )

_HOMES = {
    "SpecError": "reconciler.errors",
    "load_spec": "reconciler.spec.loading",
    "parse_spec": "reconciler.spec.loading",
    **dict.fromkeys(
        (
            "CLOUDS", "LOAD_BALANCING_POLICIES", "SPOT_PLACERS", "Accelerator", "Location",
            "ReadinessProbe", "ReplicaPolicy", "Resources", "ServiceSection", "ServiceSpec",
        ),
        "reconciler.spec.model",
    ),
}  # fmt: skip

__all__ = [
    "CLOUDS",
    "LOAD_BALANCING_POLICIES",
    "SPOT_PLACERS",
    "Accelerator",
    "Location",
    "ReadinessProbe",
    "ReplicaPolicy",
    "Resources",
    "ServiceSection",
    "ServiceSpec",
    "SpecError",
    "load_spec",
    "parse_spec",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'reconciler.spec' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
