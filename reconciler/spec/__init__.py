"""The service spec: a SkyServe service YAML loaded into validated, frozen data."""

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
