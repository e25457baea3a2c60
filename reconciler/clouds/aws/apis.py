"""AWS's CloudApis: EC2, SQS, CloudWatch and ELBv2 through boto3 (see clouds/apis.py for the
states and how honest each is)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.clouds.apis import Peek, TaggedInstance, View, gone_state, refs
from reconciler.clouds.aws import signals as aws
from reconciler.clouds.aws.lb_stats import AlbTargetGroupStats, target_group_dimension
from reconciler.clouds.aws.naming import aws_lb_name
from reconciler.clouds.lb_stats import GroupTraffic
from reconciler.errors import CloudConfigError, NotProvisionedError
from reconciler.policy import Notice, ReplicaState
from reconciler.spec.model import ServiceSpec
from reconciler.stacks import ManagedReplica


def aws_state(
    replica: ManagedReplica,
    instance: Mapping[str, Any] | None,
    health: str | None,
    initial_delay: float,
    preempted: set[str],
    now: float,
) -> View:
    """One replica's state from its EC2 instance and its target health (see module doc)."""
    if instance is None:
        return gone_state(replica, preempted, spot_reclaimed=True), now
    launched: Any = instance.get("LaunchTime")
    launched_at = float(launched.timestamp()) if hasattr(launched, "timestamp") else now
    name = str((instance.get("State") or {}).get("Name", ""))
    if name == "pending":
        return ReplicaState.PROVISIONING, launched_at
    if name == "running":
        if replica.id in preempted:
            return ReplicaState.PREEMPTED, launched_at
        if health == "healthy":
            return ReplicaState.READY, launched_at
        if health == "unhealthy" and now - launched_at >= initial_delay:
            return ReplicaState.NOT_READY, launched_at
        return ReplicaState.STARTING, launched_at
    reason = str((instance.get("StateReason") or {}).get("Code", ""))
    return gone_state(replica, preempted, reason in aws.SPOT_REASONS), launched_at


class AwsApis:
    def __init__(
        self, spec: ServiceSpec, endpoint_url: str | None = None, *, lb_quantiles: bool = True
    ) -> None:
        """`lb_quantiles` False: no p50/p90/p99 of TargetResponseTime (moto cannot compute
        extended statistics and answers HTTP 500)."""
        self.service = spec.name
        self.initial_delay = float(spec.service.readiness_probe.initial_delay_seconds)
        self.lb_quantiles = lb_quantiles
        self.use_endpoint(endpoint_url)

    def use_endpoint(self, url: str | None) -> None:
        """Every later client talks to `url` (moto, another emulator); None: AWS's own."""
        self.endpoint_url = url
        self._clients: dict[tuple[str, str], Any] = {}
        self._metrics: dict[tuple[str, str], aws.CloudWatchMetricsSource] = {}
        self._lb_stats: dict[tuple[str, str], AlbTargetGroupStats] = {}
        self._prices: dict[tuple[str, str], aws.AwsSpotPriceSource] = {}

    def client(self, name: str, region: str) -> Any:
        key = (name, region)
        if key not in self._clients:
            try:
                self._clients[key] = aws.aws_client(name, region, self.endpoint_url)
            except ValueError as exc:  # botocore's InvalidRegionError
                raise CloudConfigError(f"invalid AWS region {region!r}: {exc}") from None
        return self._clients[key]

    def check_credentials(self, regions: Sequence[str]) -> None:
        for region in regions or ["us-east-1"]:
            self.client("ec2", region)

    def _queue(
        self, region: str, replicas: Sequence[ManagedReplica], consume: bool
    ) -> aws.SqsNoticeSource:
        return aws.SqsNoticeSource(
            aws.notices_queue_name(self.service),
            region,
            instances=refs(replicas, lambda r: r.instance_id),
            service=self.service,
            acknowledge=consume,
            sqs=self.client("sqs", region),
            ec2=self.client("ec2", region),
        )

    def notices(
        self, region: str, zones: Sequence[str], replicas: Sequence[ManagedReplica], consume: bool
    ) -> list[Notice]:
        try:
            return self._queue(region, replicas, consume).poll()
        except NotProvisionedError:
            return []  # before the first apply there is no queue

    def peek(
        self, region: str | None, zones: Sequence[str], instance_type: str | None, now: float
    ) -> Peek:
        """The queue's notices (peeked) and the spot reclaims EC2 reports, placed by the
        instances' tags; the rate of the ALB named `aws_lb_name`; live spot prices."""
        if region is None:
            raise CloudConfigError("an AWS location has no region: pass --region")
        notes: list[str] = []
        notices: list[Notice] = []
        try:
            notices += self._queue(region, [], consume=False).poll()
        except NotProvisionedError as exc:
            notes.append(f"notices: {exc}")
        ec2 = self.client("ec2", region)
        notices += aws.Ec2SpotTerminationSource(region, self.service, ec2=ec2).poll()
        lb_name = aws_lb_name(self.service)
        metrics = aws.CloudWatchMetricsSource.for_load_balancer_name(
            lb_name, region, self.endpoint_url, cloudwatch=self.client("cloudwatch", region)
        )
        rate = None
        if metrics is None:
            notes.append(f"no load balancer named {lb_name}: request rate unknown")
        else:
            rate = metrics.request_rate(now)
        prices = None
        if instance_type is not None:
            prices = self.spot_prices(region, instance_type, zones)
        return Peek(notices, rate, prices, notes)

    def request_rate(
        self,
        region: str,
        outputs: Mapping[str, Any],
        replicas: Sequence[ManagedReplica],
        now: float,
    ) -> float | None:
        dimension = str(outputs.get("lb_arn_suffix") or "")
        if not dimension:
            return None  # no load balancer yet
        key = (region, dimension)
        if key not in self._metrics:
            cw = self.client("cloudwatch", region)
            self._metrics[key] = aws.CloudWatchMetricsSource(dimension, region, cloudwatch=cw)
        return self._metrics[key].request_rate(now)

    def lb_traffic(
        self, region: str, outputs: Mapping[str, Any], zones: Sequence[str], accelerator: str,
        now: float,
    ) -> list[GroupTraffic]:  # fmt: skip
        """The ALB's figures per target group and zone (clouds/aws/lb_stats.py): a typed
        group (output `target_group_arns`) is labelled with its GPU type, the shared one
        (`target_group_arn`) with `accelerator`."""
        load_balancer = str(outputs.get("lb_arn_suffix") or "")
        if not load_balancer:
            return []  # not applied yet: no load balancer
        groups: dict[str, str] = {}
        shared = str(outputs.get("target_group_arn") or "")
        if shared:
            groups[target_group_dimension(shared)] = accelerator
        typed = outputs.get("target_group_arns")
        for gpu, arn in sorted((typed if isinstance(typed, Mapping) else {}).items()):
            groups[target_group_dimension(str(arn))] = str(gpu)
        key = (region, load_balancer)
        if key not in self._lb_stats:
            self._lb_stats[key] = AlbTargetGroupStats(
                self.client("cloudwatch", region), load_balancer, quantiles=self.lb_quantiles
            )
        return self._lb_stats[key].read(groups, zones, now)

    def spot_prices(
        self, region: str, instance_type: str, zones: Sequence[str]
    ) -> dict[str, float]:
        key = (region, instance_type)
        if key not in self._prices:
            ec2 = self.client("ec2", region)
            self._prices[key] = aws.AwsSpotPriceSource(instance_type, region, ec2=ec2)
        return self._prices[key].spot_prices(zones)

    def tagged_instances(self, region: str, zones: Sequence[str]) -> list[TaggedInstance]:
        """Every instance of `region` tagged for the service (`hedgeform:service`) that has
        not ended: `describe_instances` by tag (clouds/apis.py ListsInstances)."""
        out = []
        for instance in aws.tagged_instances(self.client("ec2", region), self.service):
            tags = {str(t.get("Key")): str(t.get("Value")) for t in instance.get("Tags") or []}
            iid = str(instance["InstanceId"])
            out.append(
                TaggedInstance(
                    iid,
                    iid,
                    str((instance.get("Placement") or {}).get("AvailabilityZone", "")),
                    str((instance.get("State") or {}).get("Name", "")),
                    tags.get(aws.REPLICA_TAG, ""),
                )
            )
        return out

    def target_health(self, region: str, target_group_arn: str) -> dict[str, str]:
        """instance id -> TargetHealth.State of the registered targets."""
        reply = aws.call(
            self.client("elbv2", region), "describe_target_health", TargetGroupArn=target_group_arn
        )
        return {
            str(d["Target"]["Id"]): str(d.get("TargetHealth", {}).get("State", ""))
            for d in reply.get("TargetHealthDescriptions", [])
        }

    def states(
        self,
        region: str,
        replicas: Sequence[ManagedReplica],
        outputs: Mapping[str, Any],
        preempted: set[str],
        first_seen: Mapping[str, float],
        now: float,
    ) -> dict[str, View]:
        ids = [r.instance_id for r in replicas if r.instance_id]
        described = aws.describe_instances(self.client("ec2", region), ids) if ids else {}
        group_of = target_groups_of(replicas, outputs)
        health = {g: self.target_health(region, g) for g in sorted(set(group_of.values()))}
        return {
            r.id: aws_state(
                r,
                described.get(r.instance_id),
                health.get(group_of.get(r.id, ""), {}).get(r.instance_id),
                self.initial_delay,
                preempted,
                now,
            )
            for r in replicas
        }


def target_groups_of(
    replicas: Sequence[ManagedReplica], outputs: Mapping[str, Any]
) -> dict[str, str]:
    """replica id -> ARN of the target group whose health is its readiness: its GPU type's
    (output `target_group_arns`, when the region runs several types) else the shared one
    (`target_group_arn`); replicas without an instance, or before the first apply, have none."""
    shared = str(outputs.get("target_group_arn") or "")
    typed_out = outputs.get("target_group_arns")
    typed = typed_out if isinstance(typed_out, Mapping) else {}
    out: dict[str, str] = {}
    for r in replicas:
        group = str(typed.get(r.accelerator) or shared) if r.accelerator else shared
        if r.instance_id and group:
            out[r.id] = group
    return out
