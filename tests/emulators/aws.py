"""An AWS emulator for the end-to-end tests: moto in server mode, plus the few fixes the real
Terraform AWS provider (hashicorp/aws 5.x) needs to plan, apply, re-plan clean and destroy
terraform/modules/aws and terraform/modules/front against it, and two hooks that play the
spot market.

Only tests use it, and `make aws-emulator [PORT=4566]`, which runs it in the foreground so a
person can try the AWS path by hand:

    HEDGEFORM_AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_ACCESS_KEY_ID=testing \\
        AWS_SECRET_ACCESS_KEY=testing hedgeform apply llama-aws

Each patch names the emulator gap it closes and the moto call it changes (moto 5.2.5, the
version pyproject.toml pins); none changes what the module asks for. What an emulator cannot
prove (real capacity, instance health, IAM enforcement) is listed in docs/clouds.md.

Hooks (for tests in the same process as the server):
- `reclaim(instance_id, queue_url)`: what a spot reclaim looks like from outside: the
  EventBridge "EC2 Spot Instance Interruption Warning" on the notices queue, and the
  instance terminated with the state reason `Server.SpotInstanceTermination`.
- `refuse_capacity(zone, market)` / `restore_capacity(zone)`: `RunInstances` of that market
  in that zone answers `InsufficientInstanceCapacity`, as EC2 does when a zone's pool has no
  capacity for the type.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import string
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

ACCOUNT = "123456789012"  # moto's default account
_lock = threading.Lock()
# (zone, market) where RunInstances answers InsufficientInstanceCapacity; market "spot" or
# "on_demand" (EC2's spot and on-demand capacity pools are separate).
_refused: set[tuple[str, str]] = set()
_patched = False


# -- the gaps ----------------------------------------------------------------------------


def _monitor_instances() -> None:
    """Gap: `MonitorInstances` / `UnmonitorInstances` raise NotImplementedError (HTTP 500), and
    the provider (monitoring = true) retries that for 10+ minutes. Fix: set the instance's
    monitoring state and answer as EC2 does (moto.ec2.responses.monitoring.Monitoring)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.monitoring import Monitoring

    def answer(self: Any, state: str) -> ActionResult:
        self.error_on_dryrun()
        ids = self._get_param("InstanceIds", [])
        for instance in self.ec2_backend.get_multi_instances_by_id(ids):
            instance.monitoring_state = state
        return ActionResult(
            {
                "InstanceMonitorings": [
                    {"InstanceId": i, "Monitoring": {"State": state}} for i in ids
                ]
            }
        )

    Monitoring.monitor_instances = lambda self: answer(self, "enabled")  # type: ignore[method-assign]
    Monitoring.unmonitor_instances = lambda self: answer(self, "disabled")  # type: ignore[method-assign]


def _spot_requests_and_groups() -> None:
    """Two gaps of `RunInstances` (moto.ec2.models.instances.InstanceBackend.run_instances):

    - A spot `RunInstances` (InstanceMarketOptions) creates no spot instance request, so the
      instance has no `SpotInstanceRequestId`; provider 5.x then cannot read
      `instance_market_options` back and replaces every spot replica on every plan. Fix: a
      fulfilled one-time request per spot instance, as EC2 creates.
    - With a network interface in the request (the provider sends one when
      `associate_public_ip_address` is set), the security groups land on the interface only
      and `Instance.SecurityGroups` is empty: a perpetual in-place diff. Fix: the instance
      lists its primary interface's groups, as EC2 does.

    Also the capacity hook: a zone in `_refused` answers InsufficientInstanceCapacity."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.instances import InstanceBackend

    original = InstanceBackend.run_instances

    def run_instances(self: Any, image_id: str, count: int, user_data: Any, *args: Any,
                      **kwargs: Any) -> Any:  # fmt: skip
        zone = _zone_of(self, kwargs)
        market = "spot" if kwargs.get("instance_market_options") else "on_demand"
        if (zone, market) in _refused:
            raise EC2ClientError(
                "InsufficientInstanceCapacity",
                f"We currently do not have sufficient capacity in the Availability Zone you "
                f"requested ({zone}). Our system will be working on provisioning additional "
                "capacity.",
            )
        reservation = original(self, image_id, count, user_data, *args, **kwargs)
        for instance in reservation.instances:
            if not instance.security_groups and instance.nics:
                groups = list(instance.nics[0]._group_set)
                instance.security_groups = groups
            if instance.lifecycle == "spot" and not getattr(
                instance, "spot_instance_request_id", None
            ):
                _fulfilled_request(self, instance, kwargs)
        return reservation

    InstanceBackend.run_instances = run_instances  # type: ignore[method-assign]


def _zone_of(backend: Any, kwargs: dict[str, Any]) -> str:
    placement = kwargs.get("placement") or ""
    if placement:
        return str(placement)
    nics = kwargs.get("nics") or []
    nics = list(nics.values()) if isinstance(nics, dict) else list(nics)
    subnet_id = kwargs.get("subnet_id") or next(
        (n.get("SubnetId") for n in nics if isinstance(n, dict) and n.get("SubnetId")), None
    )
    if subnet_id:
        try:
            return str(backend.get_subnet(subnet_id).availability_zone)
        except Exception:  # an unknown subnet: RunInstances reports it itself
            return ""
    return ""


def _fulfilled_request(backend: Any, instance: Any, kwargs: dict[str, Any]) -> None:
    """A spot instance request in the state EC2 leaves a one-time request that launched its
    instance (moto's SpotInstanceRequest launches an instance of its own, so it is built
    without its constructor)."""
    from moto.ec2.models.spot_requests import LaunchSpecification, SpotInstanceRequest
    from moto.ec2.utils import random_spot_request_id

    options = kwargs.get("instance_market_options") or {}
    spot = options.get("SpotOptions", {}) if isinstance(options, dict) else {}
    request: Any = SpotInstanceRequest.__new__(SpotInstanceRequest)
    request.tags = {}
    request.ec2_backend = backend
    request.launch_specification = LaunchSpecification(
        kernel_id=None,
        ramdisk_id=None,
        image_id=instance.image_id,
        key_name=instance.key_name,
        instance_type=instance.instance_type,
        placement=instance.placement,
        monitored=False,
        subnet_id=instance.subnet_id,
    )
    request.id = random_spot_request_id()
    request.state = "active"
    request._status_code = "fulfilled"
    request.status_message = "Your spot request is fulfilled."
    request.price = ""
    request.type = spot.get("SpotInstanceType", "one-time")
    request.valid_from = None
    request.valid_until = None
    request.launch_group = None
    request.availability_zone_group = None
    request.instance_interruption_behaviour = spot.get("InstanceInterruptionBehavior", "terminate")
    request.user_data = None
    request.spot_fleet_id = None
    request.launch_spec = None
    request.all_tags = {}
    request.instance = instance
    backend.spot_instance_requests[request.id] = request
    instance.spot_instance_request_id = request.id


def _group_pair_descriptions() -> None:
    """Gap: a security group rule that references another group (a `UserIdGroupPair`) loses
    its description in `DescribeSecurityGroupRules` (moto.ec2.models.security_groups.
    SecurityGroupRule.description reads only the CIDR range's), so every
    `aws_vpc_security_group_*_rule` with `referenced_security_group_id` shows a perpetual
    in-place diff. Fix: the pair's own description, as EC2 returns it."""
    from moto.ec2.models.security_groups import SecurityGroupRule

    def description(self: Any) -> str | None:
        return self.ip_range.get("Description") or self.source_group.get("Description")

    SecurityGroupRule.description = property(description)  # type: ignore[assignment,method-assign]


def _route53_zone_ids() -> None:
    """Gap: hosted zone ids are 22 random characters (moto.route53.models.
    create_route53_zone_id), not always starting with `Z` as Route 53's do, and the front
    module's own validation rejects them. Fix: `Z` and 21 more."""
    from moto.route53 import models

    def zone_id(*args: Any, **kwargs: Any) -> str:
        return "Z" + "".join(random.choices(string.ascii_uppercase + string.digits, k=21))

    models.create_route53_zone_id = zone_id  # type: ignore[assignment]


def patch() -> None:
    """Apply every fix above, once per process."""
    global _patched
    with _lock:
        if _patched:
            return
        _monitor_instances()
        _spot_requests_and_groups()
        _group_pair_descriptions()
        _route53_zone_ids()
        _patched = True


# -- the hooks ---------------------------------------------------------------------------


def refuse_capacity(zone: str, market: str = "spot") -> None:
    """`RunInstances` of `market` ("spot" or "on_demand") in `zone` answers
    InsufficientInstanceCapacity until restored."""
    _refused.add((zone, market))


def restore_capacity(zone: str | None = None) -> None:
    """Capacity back in `zone`, both markets (None: every zone)."""
    if zone is None:
        _refused.clear()
    else:
        _refused.difference_update({(zone, "spot"), (zone, "on_demand")})


def reclaim(instance_id: str, region: str, queue_url: str | None) -> None:
    """A spot reclaim: the interruption warning EventBridge puts on the module's queue (when
    there is one), then the instance terminated with the spot state reason."""
    from moto.ec2.models import ec2_backends
    from moto.sqs.models import sqs_backends

    backend = ec2_backends[ACCOUNT][region]
    if queue_url:
        event = {
            "version": "0",
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "source": "aws.ec2",
            "account": ACCOUNT,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region,
            "resources": [f"arn:aws:ec2:{region}:{ACCOUNT}:instance/{instance_id}"],
            "detail": {"instance-id": instance_id, "instance-action": "terminate"},
        }
        queue_name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        sqs_backends[ACCOUNT][region].send_message(queue_name, json.dumps(event))
    from moto.ec2.models.instances import StateReason

    backend.terminate_instances([instance_id])
    backend.get_instance(instance_id).state_reason = StateReason(
        "Server.SpotInstanceTermination: Spot instance termination",
        "Server.SpotInstanceTermination",
    )


# -- the server --------------------------------------------------------------------------


@contextmanager
def running(port: int = 0) -> Iterator[str]:
    """A patched moto server on 127.0.0.1:`port` (0: a free one) for the `with` block; yields
    its URL. Its state lives in this process, so the hooks above reach it."""
    from moto.server import ThreadedMotoServer

    patch()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.stop()
        restore_capacity()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make aws-emulator",
        description="Run the test AWS emulator (moto with Hedgeform's fixes) in the foreground.",
    )
    parser.add_argument("--port", type=int, default=4566, help="loopback port (default 4566)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"error: port {args.port} is not in 1..65535", file=sys.stderr)
        return 2
    # moto binds in its server thread, where a port in use is printed, not raised (the
    # emulator then hung): try the port here first.
    try:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", args.port))
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        with running(args.port) as url:
            print(f"AWS emulator at {url} (Ctrl-C stops it); use HEDGEFORM_AWS_ENDPOINT_URL={url}")
            threading.Event().wait()
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
