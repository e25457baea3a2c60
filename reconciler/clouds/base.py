"""The three signal interfaces every cloud adapter implements, and their shared errors.

Adapters do I/O; the policy does not. They meet in the policy's own types (`Notice`), so the
reconciler can swap a cloud for a fake (`fakes.py`) or the sandbox without the policy noticing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

from reconciler.policy.observation import Market
from reconciler.policy.signals import FailureKind, Notice

if TYPE_CHECKING:
    from reconciler.clouds.apis import CloudApis
    from reconciler.clouds.settings import CloudSettings, ProviderSettings
    from reconciler.spec.model import ServiceSpec

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """Which replica (and zone) a cloud instance/VM belongs to, from the reconciler's state."""

    replica_id: str
    zone: str


@runtime_checkable
class NoticeSource(Protocol):
    def poll(self) -> list[Notice]:
        """Notices that arrived since the last poll; consumed messages are acknowledged, so a
        notice is returned once (the policy also dedupes by replica id, so at-least-once is
        fine)."""
        ...


@runtime_checkable
class MetricsSource(Protocol):
    def request_rate(self, now: float) -> float | None:
        """Requests per second over the last 60 s as of `now` (unix time); None when unknown,
        so the policy holds its target instead of scaling on a missing metric."""
        ...


@runtime_checkable
class PriceSource(Protocol):
    def spot_prices(self, zones: Sequence[str]) -> dict[str, float]:
        """Spot price per hour for each of `zones` that has one (a zone without spot is left
        out); an empty `zones` means every zone the source knows."""
        ...


T = TypeVar("T")


class TtlCache(Generic[T]):
    """One value refreshed after `ttl` seconds. SkyServe caches spot prices forever; prices
    move (and zones gain/lose spot), so ours expire."""

    def __init__(self, ttl: float, clock: Clock = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._value: T | None = None
        self._at = 0.0

    def get(self, load: Callable[[], T]) -> T:
        now = self._clock()
        if self._value is None or now - self._at >= self.ttl:
            self._value = load()
            self._at = now
        return self._value

    def clear(self) -> None:
        self._value = None


def parse_time(value: object) -> float | None:
    """Unix time from an RFC 3339 timestamp as the clouds write them (`Z`, offsets, 7 digits
    of fraction on Azure); None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("z", "Z")
    head, dot, rest = text.partition(".")
    if dot:  # Python keeps at most 6 fractional digits; Azure writes 7.
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = rest[: min(digits, 6)] + rest[digits:]
        text = f"{head}.{rest}" if rest[:1].isdigit() else head + rest
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def rfc3339(unix: float) -> str:
    """`2024-05-01T10:00:00Z`-style UTC timestamp for API filters."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def market_of(replica_id: str, spot: bool | None) -> Market:
    """The market a cloud's attributes say (`spot`), else the one the replica id encodes
    (<zone>-spot-<n> / <zone>-od-<n>, reconciler.policy.changes)."""
    if spot is None:
        spot = "-spot-" in replica_id
    return Market.SPOT if spot else Market.ON_DEMAND


def first_block(value: Any) -> dict[str, Any]:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return {}


class ReplicaAddress(NamedTuple):
    """One replica as a cloud's `read_replica` reads it from its Terraform state attributes."""

    zone: str  # the catalog's zone name (Azure: <location>-<zone number>)
    market: Market
    instance_id: str  # the cloud's id of the instance/VM
    name: str  # the instance/VM name (AWS: the instance id again)
    private_ip: str = ""  # its private IPv4 address; empty when the state has none yet
    version: int = 1  # the service version it runs (its module's version tag or label)
    # The GPU type it runs when its region runs several (its module's gpu-type tag or label,
    # issue 15); "" otherwise.
    accelerator: str = ""


def version_of(value: object) -> int:
    """The service version a replica's `hedgeform:version` tag or `hedgeform-version` label
    holds: 1 for a replica from before versions (no tag) or a value no module writes (the
    modules validate 1-999999999)."""
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() and 0 < len(text) < 10 and int(text) else 1


LaunchErrorRule = tuple[re.Pattern[str], FailureKind]
CAP, QUOTA, CONFIG, OTHER = (
    FailureKind.CAPACITY,
    FailureKind.QUOTA,
    FailureKind.CONFIG,
    FailureKind.OTHER,
)


def launch_error_rules(*pairs: tuple[str, FailureKind]) -> tuple[LaunchErrorRule, ...]:
    """Rules for clouds/capacity.py: (regular expression, kind), matched case-insensitively;
    the first match wins."""
    return tuple((re.compile(pattern, re.IGNORECASE), kind) for pattern, kind in pairs)


# The fields of a module's `versions` entry every cloud has, each from the tfvars context key
# of the same name; a cloud adds its instance type field (`Cloud.version_fields`).
SHARED_VERSION_FIELDS = (
    ("accelerator_name", "accelerator_name"),
    ("accelerator_count", "accelerator_count"),
    ("image_id", "image_id"),
    ("disk_size_gb", "disk_size_gb"),
    ("setup_script", "setup_script"),
    ("run_script", "run_script"),
    ("envs", "envs"),
)


@dataclass(frozen=True)
class Cloud:
    """Everything Hedgeform knows of one cloud, defined in its folder (clouds/<name>/) and
    registered by name in clouds/registry.py; nothing outside that folder branches on it.

    The folder: `signals.py` (its API adapters), `apis.py` (the CloudApis the backend asks
    each tick), `state.py` (its replica in Terraform state), `launch_errors.py` (how its
    apply errors are classified), `settings.py` (its settings check, which images are its,
    its own tfvars context entries), `naming.py` (the names its module gives resources that
    the adapters look up, if any), and `CLOUD` in `__init__.py`. `make_apis` loads the API
    modules on first use: boto3 and the cloud SDKs are slow to import, and the sandbox never
    needs them."""

    name: str  # "aws", the `cloud:` of a spec location
    provider: str  # the Terraform provider of its module: aws, google, azurerm
    replica_type: str  # the replica resource of terraform/modules/<name>, for_each by id
    read_replica: Callable[[str, Mapping[str, Any]], ReplicaAddress]  # (id, attributes)
    launch_errors: tuple[LaunchErrorRule, ...]  # how its apply errors are classified
    zone_patterns: tuple[re.Pattern[str], ...]  # how its error messages name a zone
    live_spot_prices: bool  # its API gives spot prices cheaply (else the shipped catalog)
    make_apis: Callable[[ServiceSpec, ProviderSettings], CloudApis]
    provider_config: Callable[[str, ProviderSettings], dict[str, Any]]  # (region, settings)
    # Whether a spec's `resources.image_id` is written for this cloud (SkyPilot specs name
    # one per cloud); an image that does not fit falls back to the settings and the catalog.
    image_fits: Callable[[str], bool]
    # The cloud's own entries of a region stack's tfvars context (beyond the shared ones,
    # clouds/stack_context.py); CloudConfigError when a setting they need is missing.
    stack_context: Callable[[CloudSettings, str], dict[str, Any]]  # (settings, region)
    # (spec, this cloud's regions the spec uses, settings): SettingsError (`settings.missing`)
    # naming the first setting it lacks, before any work; clouds/checks.py calls it.
    check_settings: Callable[[ServiceSpec, Sequence[str], ProviderSettings], None]
    # Its module launches each replica with its own version's instance, image and scripts
    # (a `versions` map in the tfvars, one entry per version in use) and tags or labels it,
    # so rollouts can run there (policy/rollout.py): (the module's field of a `versions`
    # entry, the tfvars context key it takes its value from), e.g. ("vm_size",
    # "instance_type"). Empty: the module runs one version and a changed spec applies in one
    # go.
    version_fields: tuple[tuple[str, str], ...] = ()
    # Its module runs each replica on its own GPU type's instance when a region runs several
    # (`replica_accelerators` and `accelerator_types` in the tfvars, issue 15; an entry of
    # `accelerator_types` holds the instance fields of `version_fields`,
    # stack_context.type_entry). False: one instance type per region, the catalog's choice.
    typed_replicas: bool = False
    # At most this many GPU types per region (None: no limit the module knows of); a set of
    # more runs the best ranked that many, and `plan` names the others.
    max_types_per_region: int | None = None
    # Its load balancer weighs each GPU type's members by their serving capacity
    # (`accelerator_weights` and `untyped_weight` in the tfvars: AWS's weighted forward).
    weighs_types: bool = False

    @property
    def carries_versions(self) -> bool:
        """Whether rollouts can run on this cloud (`version_fields`)."""
        return bool(self.version_fields)
