"""Shared fixtures: a minimal valid spec document and a way to get its problems."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.errors import SpecError
from reconciler.spec import parse_spec

BASE: dict[str, Any] = {
    "service": {
        "readiness_probe": "/health",
        "replica_policy": {"min_replicas": 1, "max_replicas": 3, "target_qps_per_replica": 5},
    },
    "resources": {"cloud": "aws", "region": "us-east-1", "use_spot": True, "ports": 8081},
    "run": "serve",
}


@pytest.fixture
def base() -> dict[str, Any]:
    """A fresh copy of a valid document to break one field at a time."""
    return copy.deepcopy(BASE)


@pytest.fixture
def problems_for() -> Callable[[object], tuple[str, ...]]:
    """Parse a document that must be invalid and return its problem lines."""

    def run(doc: object) -> tuple[str, ...]:
        with pytest.raises(SpecError) as caught:
            parse_spec(doc, name="svc", source="svc.yaml")
        return caught.value.problems

    return run
