"""AWS's CloudApis: EC2, SQS, CloudWatch and ELBv2 through boto3 (see clouds/apis.py for the
states and how honest each is)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.clouds.apis import View, gone_state, refs
from reconciler.clouds.aws import signals as aws
from reconciler.errors import NotProvisionedError
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
    def __init__(self, spec: ServiceSpec, endpoint_url: str | None = None) -> None:
        self.service = spec.name
        self.initial_delay = float(spec.service.readiness_probe.initial_delay_seconds)
        self.endpoint_url = endpoint_url
        self._clients: dict[tuple[str, str], Any] = {}
        self._metrics: dict[tuple[str, str], aws.CloudWatchMetricsSource] = {}
        self._prices: dict[tuple[str, str], aws.AwsSpotPriceSource] = {}

    def client(self, name: str, region: str) -> Any:
        key = (name, region)
        if key not in self._clients:
            self._clients[key] = aws.aws_client(name, region, self.endpoint_url)
        return self._clients[key]

    def check_credentials(self, regions: Sequence[str]) -> None:
        for region in regions or ["us-east-1"]:
            self.client("ec2", region)

    def notices(
        self, region: str, zones: Sequence[str], replicas: Sequence[ManagedReplica], consume: bool
    ) -> list[Notice]:
        source = aws.SqsNoticeSource(
            aws.notices_queue_name(self.service),
            region,
            instances=refs(replicas, lambda r: r.instance_id),
            service=self.service,
            acknowledge=consume,
            sqs=self.client("sqs", region),
            ec2=self.client("ec2", region),
        )
        try:
            return source.poll()
        except NotProvisionedError:
            return []  # before the first apply there is no queue

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

    def spot_prices(
        self, region: str, instance_type: str, zones: Sequence[str]
    ) -> dict[str, float]:
        key = (region, instance_type)
        if key not in self._prices:
            ec2 = self.client("ec2", region)
            self._prices[key] = aws.AwsSpotPriceSource(instance_type, region, ec2=ec2)
        return self._prices[key].spot_prices(zones)

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
        target_group = str(outputs.get("target_group_arn") or "")
        health = self.target_health(region, target_group) if target_group and ids else {}
        return {
            r.id: aws_state(
                r,
                described.get(r.instance_id),
                health.get(r.instance_id),
                self.initial_delay,
                preempted,
                now,
            )
            for r in replicas
        }
