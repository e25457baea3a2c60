"""Cloud signal adapters: preemption notices, request rate and spot prices from real clouds.

Each adapter turns one cloud API into the policy's own signal types (`Notice`, a request rate,
prices), so the pure policy never sees a cloud SDK. See `base` for the interfaces.
"""

from reconciler.adapters.base import InstanceRef, MetricsSource, NoticeSource, PriceSource
from reconciler.adapters.capacity import ApplyFailure, classify_launch_error, parse_apply_errors
from reconciler.errors import AdapterError, CredentialsError, ThrottledError

__all__ = [
    "AdapterError",
    "ApplyFailure",
    "CredentialsError",
    "InstanceRef",
    "MetricsSource",
    "NoticeSource",
    "PriceSource",
    "ThrottledError",
    "classify_launch_error",
    "parse_apply_errors",
]
