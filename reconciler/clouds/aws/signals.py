"""AWS signals: spot notices (EventBridge -> SQS, and EC2 state reasons), ALB request rate
(CloudWatch), and spot prices (`describe_spot_price_history`).

Throttling is retried by botocore itself in "adaptive" mode (exponential backoff with jitter
plus a client-side rate limiter), the maintained option; only when it gives up do we turn the
error into a one-line `ThrottledError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError  # type: ignore[import-untyped]

from reconciler.clouds.aws import naming
from reconciler.clouds.base import Clock, InstanceRef, TtlCache, parse_time
from reconciler.errors import AdapterError, CredentialsError, NotProvisionedError, ThrottledError
from reconciler.policy.signals import Notice, NoticeKind

CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if temporary), "
    "or AWS_PROFILE for a profile in ~/.aws (`aws configure`)"
)
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
    }
)
_BAD_CREDENTIALS = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
    }
)

REPLICA_TAG = "hedgeform:replica"
SERVICE_TAG = "hedgeform:service"
INTERRUPTION_WARNING = "EC2 Spot Instance Interruption Warning"
REBALANCE = "EC2 Instance Rebalance Recommendation"
STATE_CHANGE = "EC2 Instance State-change Notification"
# StateReason codes EC2 sets when it reclaims a spot instance (terminate / stop behaviours).
SPOT_REASONS = frozenset({"Server.SpotInstanceTermination", "Server.SpotInstanceShutdown"})
GONE_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})


def notices_queue_name(service: str) -> str:
    return naming.notices_queue_name(service)


def aws_client(
    service: str,
    region: str,
    endpoint_url: str | None = None,
    *,
    max_attempts: int = 6,
    session: Any = None,
) -> Any:
    """A boto3 client with adaptive retries; raises CredentialsError when none are found, so
    the operator learns which variables to set before any API call is made."""
    session = session or boto3.session.Session()
    try:
        credentials = session.get_credentials()
    except (PartialCredentialsError, BotoCoreError) as exc:
        raise CredentialsError(
            f"AWS credentials are unusable ({exc}): {CREDENTIALS_HINT}"
        ) from None
    if credentials is None:
        raise CredentialsError(f"AWS credentials not found: {CREDENTIALS_HINT}")
    config = Config(
        retries={"mode": "adaptive", "total_max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=20,
    )
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)


NOT_AWS = "is the endpoint URL an AWS service or emulator? HEDGEFORM_AWS_ENDPOINT_URL"


def call(client: Any, operation: str, **kwargs: Any) -> dict[str, Any]:
    """Call `client.operation(**kwargs)`; any failure becomes a one-line AdapterError."""
    name = f"{client.meta.service_model.service_name}:{operation}"
    try:
        result: dict[str, Any] = getattr(client, operation)(**kwargs)
        return result
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")).strip()
        if code in THROTTLING_CODES:
            attempts = int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1
            raise ThrottledError(
                f"AWS {name} still throttled ({code}) after {attempts} attempt(s) with backoff; "
                "try again later or poll less often"
            ) from None
        if code == "Unknown" and not message:  # no AWS error body: not an AWS endpoint
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            raise AdapterError(
                f"AWS {name}: the endpoint answered HTTP {status} without an AWS error ({NOT_AWS})"
            ) from None
        if code in _BAD_CREDENTIALS:
            raise CredentialsError(
                f"AWS rejected the credentials ({code}): {CREDENTIALS_HINT}"
            ) from None
        raise AdapterError(f"AWS {name} failed: {code}: {message}") from None
    except (NoCredentialsError, PartialCredentialsError):
        raise CredentialsError(f"AWS credentials not found: {CREDENTIALS_HINT}") from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise AdapterError(f"AWS {name}: cannot reach the endpoint: {exc}") from None
    except ResponseParserError:  # an HTTP server that is not AWS (a wrong endpoint URL)
        raise AdapterError(
            f"AWS {name}: the endpoint's answer is not an AWS API response ({NOT_AWS})"
        ) from None
    except BotoCoreError as exc:
        raise AdapterError(f"AWS {name} failed: {exc}") from None


def _tags(instance: Mapping[str, Any]) -> dict[str, str]:
    return {str(t.get("Key")): str(t.get("Value")) for t in instance.get("Tags") or []}


def describe_instances(ec2: Any, instance_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """id -> instance. Filters by `instance-id` rather than `InstanceIds=`, so one id that is
    already gone does not fail the whole call with InvalidInstanceID.NotFound."""
    ids = sorted(set(instance_ids))
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 200):  # the API caps filter values per call
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "Filters": [{"Name": "instance-id", "Values": ids[start : start + 200]}]
            }
            if token:
                kwargs["NextToken"] = token
            page = call(ec2, "describe_instances", **kwargs)
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    found[str(instance["InstanceId"])] = instance
            token = page.get("NextToken")
            if not token:
                break
    return found


ENDED_STATES = ("shutting-down", "terminated")  # what `tagged_instances` leaves out


def tagged_instances(ec2: Any, service: str) -> list[dict[str, Any]]:
    """Every instance tagged `hedgeform:service=<service>` that has not ended (stopped ones
    included: they still exist and keep their disks), sorted by id."""
    live = ["pending", "running", "stopping", "stopped"]
    filters = [
        {"Name": f"tag:{SERVICE_TAG}", "Values": [service]},
        {"Name": "instance-state-name", "Values": live},
    ]
    found: dict[str, dict[str, Any]] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Filters": filters}
        if token:
            kwargs["NextToken"] = token
        page = call(ec2, "describe_instances", **kwargs)
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                state = str((instance.get("State") or {}).get("Name", ""))
                if state not in ENDED_STATES:  # an emulator may ignore the state filter
                    found[str(instance["InstanceId"])] = instance
        token = page.get("NextToken")
        if not token:
            return [found[i] for i in sorted(found)]


class _Owner:
    """Maps an instance to its replica: the reconciler's mapping first, else the tags."""

    def __init__(self, instances: Mapping[str, InstanceRef] | None, service: str | None) -> None:
        self.instances = dict(instances or {})
        self.service = service

    def ref(self, instance_id: str, described: Mapping[str, Any] | None) -> InstanceRef | None:
        known = self.instances.get(instance_id)
        zone = None
        if described is not None:
            zone = described.get("Placement", {}).get("AvailabilityZone")
        if known is not None:
            return InstanceRef(known.replica_id, zone or known.zone)
        if described is None:
            return None
        tags = _tags(described)
        if self.service is not None and tags.get(SERVICE_TAG) not in (None, self.service):
            return None  # another Hedgeform service's instance (queues see the whole region)
        replica = tags.get(REPLICA_TAG)
        if not replica or not zone:
            return None
        return InstanceRef(replica, str(zone))


class SqsNoticeSource:
    """Spot notices from the EventBridge -> SQS queue `hedgeform-<service>-notices`.

    - Interruption Warning -> WARNING (AWS gives two minutes: time to launch a replacement).
    - State-change to shutting-down/terminated/stopping/stopped -> PREEMPTED, only when the
      instance's StateReason is a spot reclaim (our own terminations are not preemptions).
    - Rebalance Recommendation -> ignored unless `rebalance_as_warning`: it is an early,
      often false, risk signal (SkyServe ignores it); acting on each would buy replicas that
      are mostly not needed.
    Messages are deleted once turned into notices (or found not to concern us); when an API
    call fails they stay in the queue and come back after the visibility timeout. With
    `acknowledge=False` (inspection) nothing is deleted.
    """

    def __init__(
        self,
        queue_name: str,
        region: str,
        endpoint_url: str | None = None,
        *,
        instances: Mapping[str, InstanceRef] | None = None,
        service: str | None = None,
        rebalance_as_warning: bool = False,
        acknowledge: bool = True,
        max_batches: int = 10,
        sqs: Any = None,
        ec2: Any = None,
        clock: Clock = time.time,
    ) -> None:
        self.queue_name = queue_name
        self.region = region
        self.rebalance_as_warning = rebalance_as_warning
        self.acknowledge = acknowledge
        self.max_batches = max_batches
        self.owner = _Owner(instances, service)
        self._sqs = sqs or aws_client("sqs", region, endpoint_url)
        self._ec2 = ec2 or aws_client("ec2", region, endpoint_url)
        self._clock = clock
        self._queue_url: str | None = None

    def queue_url(self) -> str:
        if self._queue_url is None:
            try:
                reply = call(self._sqs, "get_queue_url", QueueName=self.queue_name)
            except AdapterError as exc:
                if "NonExistentQueue" in str(exc) or "QueueDoesNotExist" in str(exc):
                    raise NotProvisionedError(
                        f"SQS queue {self.queue_name} not found in {self.region}: apply the "
                        "region stack first (it creates the queue and the EventBridge rule)"
                    ) from None
                raise
            self._queue_url = str(reply["QueueUrl"])
        return self._queue_url

    def poll(self) -> list[Notice]:
        url = self.queue_url()
        messages: list[dict[str, Any]] = []
        # Peeked messages stay visible, so a second batch could repeat the first.
        for _ in range(self.max_batches if self.acknowledge else 1):
            reply = call(
                self._sqs,
                "receive_message",
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                # Peeking (acknowledge=False, `hedgeform signals`) must not hide messages
                # from the reconciler: they become visible again at once.
                VisibilityTimeout=60 if self.acknowledge else 0,
            )
            batch = reply.get("Messages", [])
            messages.extend(batch)
            if len(batch) < 10:
                break
        if not messages:
            return []
        events = [(m, _event(m.get("Body", ""))) for m in messages]
        ids: set[str] = set()
        state_changes: set[str] = set()
        for _, event in events:
            detail = event.get("detail") if event is not None else None
            if isinstance(detail, dict) and detail.get("instance-id"):
                ids.add(str(detail["instance-id"]))
                if event is not None and event.get("detail-type") == STATE_CHANGE:
                    state_changes.add(str(detail["instance-id"]))
        # Describe what the mapping cannot answer: unmapped instances, and every state change
        # (only the instance's StateReason says whether the spot market reclaimed it).
        need = {iid for iid in ids if iid not in self.owner.instances} | state_changes
        described = describe_instances(self._ec2, need) if need else {}
        notices: list[Notice] = []
        for _, event in events:
            notice = self._notice(event, described) if event is not None else None
            if notice is not None:
                notices.append(notice)
        if self.acknowledge:
            self._delete([m for m, _ in events])
        return notices

    def _notice(self, event: dict[str, Any], described: Mapping[str, Any]) -> Notice | None:
        detail = event.get("detail")
        if not isinstance(detail, dict):
            return None
        instance_id = str(detail.get("instance-id") or "")
        kind_name = event.get("detail-type")
        at = parse_time(event.get("time")) or self._clock()
        instance = described.get(instance_id)
        if kind_name == INTERRUPTION_WARNING or (
            kind_name == REBALANCE and self.rebalance_as_warning
        ):
            kind = NoticeKind.WARNING
        elif kind_name == STATE_CHANGE and detail.get("state") in GONE_STATES:
            if instance is None or not _spot_reclaimed(instance):
                return None
            kind = NoticeKind.PREEMPTED
        else:
            return None
        ref = self.owner.ref(instance_id, instance)
        if ref is None:
            return None
        return Notice(kind, ref.replica_id, ref.zone, at)

    def _delete(self, messages: Sequence[Mapping[str, Any]]) -> None:
        url = self.queue_url()
        for start in range(0, len(messages), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages[start : start + 10])
            ]
            call(self._sqs, "delete_message_batch", QueueUrl=url, Entries=entries)


def _event(body: str) -> dict[str, Any] | None:
    """The EventBridge event in an SQS body (also unwraps an SNS envelope)."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    if (
        isinstance(data, dict)
        and "detail-type" not in data
        and isinstance(data.get("Message"), str)
    ):
        return _event(data["Message"])
    return data if isinstance(data, dict) else None


def _spot_reclaimed(instance: Mapping[str, Any]) -> bool:
    reason = instance.get("StateReason") or {}
    return str(reason.get("Code", "")) in SPOT_REASONS


class Ec2SpotTerminationSource:
    """PREEMPTED notices from `describe_instances` state reasons: the fallback when the
    EventBridge rule or queue is missing or lost a message. Reports each instance once."""

    def __init__(
        self,
        region: str,
        service: str,
        endpoint_url: str | None = None,
        *,
        instances: Mapping[str, InstanceRef] | None = None,
        ec2: Any = None,
        clock: Clock = time.time,
    ) -> None:
        self.service = service
        self.owner = _Owner(instances, service)
        self._ec2 = ec2 or aws_client("ec2", region, endpoint_url)
        self._clock = clock
        self._reported: set[str] = set()

    def poll(self) -> list[Notice]:
        filters = [
            {"Name": f"tag:{SERVICE_TAG}", "Values": [self.service]},
            {"Name": "instance-state-name", "Values": sorted(GONE_STATES)},
        ]
        notices: list[Notice] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Filters": filters}
            if token:
                kwargs["NextToken"] = token
            page = call(self._ec2, "describe_instances", **kwargs)
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    iid = str(instance["InstanceId"])
                    # No `instance-lifecycle` filter server-side: moto lacks it, and the
                    # state reason alone already says "spot reclaimed".
                    if iid in self._reported or not _spot_reclaimed(instance):
                        continue
                    ref = self.owner.ref(iid, instance)
                    if ref is None:
                        continue
                    self._reported.add(iid)
                    notices.append(
                        Notice(NoticeKind.PREEMPTED, ref.replica_id, ref.zone, self._clock())
                    )
            token = page.get("NextToken")
            if not token:
                return notices


LB_NAMESPACE = "AWS/ApplicationELB"


def load_balancer_dimension(arn: str) -> str:
    """CloudWatch's LoadBalancer dimension: the ARN part after `loadbalancer/` (app/name/id)."""
    marker = ":loadbalancer/"
    if marker not in arn:
        raise AdapterError(f"not an ALB ARN: {arn}")
    return arn.split(marker, 1)[1]


class CloudWatchMetricsSource:
    """Request rate of an ALB from CloudWatch `RequestCount` (Sum over 60 s periods).

    ALB publishes RequestCount only for minutes with requests, so "no datapoint" means zero
    when the metric exists at all (it is listed), and unknown (None) when it never existed
    (wrong name, brand-new LB). CloudWatch lags 1-3 minutes: the newest datapoint no older
    than `max_age` seconds counts as "the last minute".
    """

    def __init__(
        self,
        load_balancer: str,
        region: str,
        endpoint_url: str | None = None,
        *,
        max_age: float = 240.0,
        cloudwatch: Any = None,
    ) -> None:
        self.load_balancer = load_balancer
        self.max_age = max_age
        self._cw = cloudwatch or aws_client("cloudwatch", region, endpoint_url)
        self._metric_exists = False

    @classmethod
    def for_load_balancer_name(
        cls, name: str, region: str, endpoint_url: str | None = None, **kwargs: Any
    ) -> CloudWatchMetricsSource | None:
        """The source for the ALB called `name`; None when there is no such load balancer."""
        elb = aws_client("elbv2", region, endpoint_url)
        try:
            reply = call(elb, "describe_load_balancers", Names=[name])
        except AdapterError as exc:
            if "LoadBalancerNotFound" in str(exc):
                return None
            raise
        balancers = reply.get("LoadBalancers", [])
        if not balancers:
            return None
        dimension = load_balancer_dimension(str(balancers[0]["LoadBalancerArn"]))
        return cls(dimension, region, endpoint_url, **kwargs)

    def _dimensions(self) -> list[dict[str, str]]:
        return [{"Name": "LoadBalancer", "Value": self.load_balancer}]

    def request_rate(self, now: float) -> float | None:
        end = datetime.fromtimestamp(now, UTC)
        reply = call(
            self._cw,
            "get_metric_statistics",
            Namespace=LB_NAMESPACE,
            MetricName="RequestCount",
            Dimensions=self._dimensions(),
            StartTime=end - timedelta(seconds=self.max_age),
            EndTime=end,
            Period=60,
            Statistics=["Sum"],
        )
        points = [p for p in reply.get("Datapoints", []) if "Sum" in p and "Timestamp" in p]
        if points:
            self._metric_exists = True
            latest = max(points, key=lambda p: p["Timestamp"])
            return float(latest["Sum"]) / 60.0
        if not self._metric_exists:
            listed = call(
                self._cw,
                "list_metrics",
                Namespace=LB_NAMESPACE,
                MetricName="RequestCount",
                Dimensions=self._dimensions(),
            )
            self._metric_exists = bool(listed.get("Metrics"))
        return 0.0 if self._metric_exists else None


class AwsSpotPriceSource:
    """Current spot price per AZ for one instance type, cached for `ttl` seconds (SkyServe
    caches prices for the life of the process; they move, so ours expire)."""

    def __init__(
        self,
        instance_type: str,
        region: str,
        endpoint_url: str | None = None,
        *,
        product: str = "Linux/UNIX",
        ttl: float = 300.0,
        ec2: Any = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.instance_type = instance_type
        self.product = product
        self._ec2 = ec2 or aws_client("ec2", region, endpoint_url)
        self._cache: TtlCache[dict[str, float]] = TtlCache(ttl, clock)

    def spot_prices(self, zones: Sequence[str]) -> dict[str, float]:
        prices = self._cache.get(self._load)
        return {z: p for z, p in sorted(prices.items()) if not zones or z in zones}

    def _load(self) -> dict[str, float]:
        # StartTime = now asks for the price in effect now for each AZ (one row per AZ).
        latest: dict[str, tuple[datetime, float]] = {}
        token: str | None = None
        for _ in range(50):
            kwargs: dict[str, Any] = {
                "InstanceTypes": [self.instance_type],
                "ProductDescriptions": [self.product],
                "StartTime": datetime.now(UTC),
            }
            if token:
                kwargs["NextToken"] = token
            page = call(self._ec2, "describe_spot_price_history", **kwargs)
            for row in page.get("SpotPriceHistory", []):
                zone, stamp = str(row["AvailabilityZone"]), row["Timestamp"]
                price = float(row["SpotPrice"])
                if zone not in latest or stamp > latest[zone][0]:
                    latest[zone] = (stamp, price)
            token = page.get("NextToken")
            if not token:
                break
        return {zone: price for zone, (_, price) in latest.items()}
