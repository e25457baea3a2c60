"""AWS adapters against a real moto server (EC2, SQS, EventBridge, CloudWatch, ELBv2), plus
botocore Stubber / before-send hooks for what moto cannot do (capacity errors, throttling)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

from reconciler.clouds.aws import signals as aws
from reconciler.clouds.base import InstanceRef
from reconciler.clouds.capacity import classify_launch_error
from reconciler.errors import AdapterError, CredentialsError, NotProvisionedError, ThrottledError
from reconciler.policy import FailureKind, Notice, NoticeKind

REGION = "us-east-1"


@functools.cache
def client(service: str, url: str) -> Any:
    """Cached: creating a boto3 client loads its service model (~0.1 s each)."""
    return boto3.client(service, region_name=REGION, endpoint_url=url)


def make_queue(url: str, service: str) -> str:
    """The per-service queue and an EventBridge rule for the three EC2 event types."""
    sqs = client("sqs", url)
    queue_url = sqs.create_queue(QueueName=aws.notices_queue_name(service))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = client("events", url)
    pattern = {
        "source": ["aws.ec2"],
        "detail-type": [aws.INTERRUPTION_WARNING, aws.REBALANCE, aws.STATE_CHANGE],
    }
    events.put_rule(Name=f"hedgeform-{service}-spot", EventPattern=json.dumps(pattern))
    events.put_targets(Rule=f"hedgeform-{service}-spot", Targets=[{"Id": "q", "Arn": arn}])
    return str(queue_url)


def put_event(url: str, detail_type: str, detail: dict[str, Any]) -> None:
    reply = client("events", url).put_events(
        Entries=[
            {
                "Source": "aws.ec2",
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
                "Resources": [
                    f"arn:aws:ec2:{REGION}:123456789012:instance/{detail['instance-id']}"
                ],
            }
        ]
    )
    assert reply["FailedEntryCount"] == 0


@pytest.fixture(autouse=True)
def _drop_rules(moto_url: str) -> Iterator[None]:
    """Rules match every EC2 event in the region, so one test's rule would keep feeding its
    queue during later tests (moto is shared, not reset): remove them after each test."""
    yield
    events = client("events", moto_url)
    for rule in events.list_rules().get("Rules", []):
        targets = events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
        if targets:
            events.remove_targets(Rule=rule["Name"], Ids=[t["Id"] for t in targets])
        events.delete_rule(Name=rule["Name"])


_IMAGE: list[str] = []


def image_id(ec2: Any) -> str:
    """One of moto's default AMIs (listing them all takes seconds; they survive a reset)."""
    if not _IMAGE:
        _IMAGE.append(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])
    return _IMAGE[0]


def run_spot(url: str, zone: str, replica: str, service: str) -> str:
    ec2 = client("ec2", url)
    image = image_id(ec2)
    instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="g6.xlarge",
        Placement={"AvailabilityZone": zone},
        InstanceMarketOptions={
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        },
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": aws.REPLICA_TAG, "Value": replica},
                    {"Key": aws.SERVICE_TAG, "Value": service},
                ],
            }
        ],
    )["Instances"][0]
    assert instance.get("InstanceLifecycle") == "spot"
    return str(instance["InstanceId"])


def spot_reclaim(url: str, instance_id: str) -> None:
    """Terminate, then set the state reason EC2 gives a spot reclaim (moto always records a
    user-initiated shutdown; its server runs in this process, so its backend is reachable)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import StateReason

    client("ec2", url).terminate_instances(InstanceIds=[instance_id])
    instance = ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(instance_id)
    instance.state_reason = StateReason(
        "Server.SpotInstanceTermination: Spot instance termination",
        "Server.SpotInstanceTermination",
    )


def queue_depth(url: str, queue_url: str) -> int:
    attrs = client("sqs", url).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def test_eventbridge_interruption_warning_reaches_sqs_and_becomes_a_warning(
    moto_url: str, svc: str
) -> None:
    queue_url = make_queue(moto_url, svc)
    iid = run_spot(moto_url, "us-east-1b", "r-1", svc)
    put_event(
        moto_url, aws.INTERRUPTION_WARNING, {"instance-id": iid, "instance-action": "terminate"}
    )
    source = aws.SqsNoticeSource(aws.notices_queue_name(svc), REGION, moto_url, service=svc)
    (notice,) = source.poll()
    assert notice.kind is NoticeKind.WARNING
    assert (notice.replica_id, notice.zone) == ("r-1", "us-east-1b")  # from tag and placement
    assert abs(notice.at - time.time()) < 120
    assert queue_depth(moto_url, queue_url) == 0  # acknowledged
    assert source.poll() == []


def test_mapping_given_by_the_reconciler_wins(moto_url: str, svc: str) -> None:
    make_queue(moto_url, svc)
    put_event(
        moto_url, aws.INTERRUPTION_WARNING, {"instance-id": "i-0abc", "instance-action": "stop"}
    )
    source = aws.SqsNoticeSource(
        aws.notices_queue_name(svc),
        REGION,
        moto_url,
        instances={"i-0abc": InstanceRef("r-5", "us-east-1c")},
    )
    assert [(n.kind, n.replica_id, n.zone) for n in source.poll()] == [
        (NoticeKind.WARNING, "r-5", "us-east-1c")
    ]


def test_rebalance_is_ignored_unless_configured(moto_url: str, svc: str) -> None:
    make_queue(moto_url, svc)
    iid = run_spot(moto_url, "us-east-1a", "r-2", svc)
    put_event(moto_url, aws.REBALANCE, {"instance-id": iid})
    name = aws.notices_queue_name(svc)
    assert aws.SqsNoticeSource(name, REGION, moto_url).poll() == []
    put_event(moto_url, aws.REBALANCE, {"instance-id": iid})
    source = aws.SqsNoticeSource(name, REGION, moto_url, rebalance_as_warning=True)
    assert [(n.kind, n.replica_id) for n in source.poll()] == [(NoticeKind.WARNING, "r-2")]


def test_state_change_is_preempted_only_for_a_spot_reclaim(moto_url: str, svc: str) -> None:
    make_queue(moto_url, svc)
    reclaimed = run_spot(moto_url, "us-east-1a", "r-3", svc)
    ours = run_spot(moto_url, "us-east-1b", "r-4", svc)
    spot_reclaim(moto_url, reclaimed)
    client("ec2", moto_url).terminate_instances(InstanceIds=[ours])  # a scale-down, not a loss
    for iid in (reclaimed, ours):
        put_event(moto_url, aws.STATE_CHANGE, {"instance-id": iid, "state": "terminated"})
    source = aws.SqsNoticeSource(aws.notices_queue_name(svc), REGION, moto_url)
    assert [(n.kind, n.replica_id, n.zone) for n in source.poll()] == [
        (NoticeKind.PREEMPTED, "r-3", "us-east-1a")
    ]


def test_other_services_and_untagged_instances_are_skipped_but_acknowledged(
    moto_url: str, svc: str
) -> None:
    queue_url = make_queue(moto_url, svc)
    other = run_spot(moto_url, "us-east-1a", "r-1", svc + "-other")
    put_event(moto_url, aws.INTERRUPTION_WARNING, {"instance-id": other})
    put_event(moto_url, aws.INTERRUPTION_WARNING, {"instance-id": "i-doesnotexist"})
    client("sqs", moto_url).send_message(QueueUrl=queue_url, MessageBody="not json")
    source = aws.SqsNoticeSource(aws.notices_queue_name(svc), REGION, moto_url, service=svc)
    assert source.poll() == []
    assert queue_depth(moto_url, queue_url) == 0


def test_peeking_leaves_messages_for_the_reconciler(moto_url: str, svc: str) -> None:
    queue_url = make_queue(moto_url, svc)
    iid = run_spot(moto_url, "us-east-1a", "r-1", svc)
    put_event(moto_url, aws.INTERRUPTION_WARNING, {"instance-id": iid})
    name = aws.notices_queue_name(svc)
    peek = aws.SqsNoticeSource(name, REGION, moto_url, acknowledge=False)
    assert len(peek.poll()) == 1
    assert queue_depth(moto_url, queue_url) == 1
    assert len(aws.SqsNoticeSource(name, REGION, moto_url).poll()) == 1


def test_many_messages_are_read_in_batches(moto_url: str, svc: str) -> None:
    make_queue(moto_url, svc)
    refs = {f"i-{n:04d}": InstanceRef(f"r-{n}", "us-east-1a") for n in range(23)}
    for iid in refs:
        put_event(moto_url, aws.INTERRUPTION_WARNING, {"instance-id": iid})
    source = aws.SqsNoticeSource(aws.notices_queue_name(svc), REGION, moto_url, instances=refs)
    assert sorted(n.replica_id for n in source.poll()) == sorted(
        r.replica_id for r in refs.values()
    )


def test_missing_queue_is_not_provisioned(moto_url: str, svc: str) -> None:
    source = aws.SqsNoticeSource("hedgeform-nope-notices", REGION, moto_url)
    with pytest.raises(NotProvisionedError, match="hedgeform-nope-notices not found in us-east-1"):
        source.poll()


def test_describe_instances_state_reason_fallback(moto_url: str, svc: str) -> None:
    reclaimed = run_spot(moto_url, "us-east-1d", "r-8", svc)
    run_spot(moto_url, "us-east-1a", "r-9", svc)  # still running
    spot_reclaim(moto_url, reclaimed)
    source = aws.Ec2SpotTerminationSource(REGION, svc, moto_url, clock=lambda: 1000.0)
    assert source.poll() == [Notice(NoticeKind.PREEMPTED, "r-8", "us-east-1d", 1000.0)]
    assert source.poll() == []  # reported once


def _put_requests(url: str, dimension: str, count: float, at: datetime) -> None:
    client("cloudwatch", url).put_metric_data(
        Namespace="AWS/ApplicationELB",
        MetricData=[
            {
                "MetricName": "RequestCount",
                "Dimensions": [{"Name": "LoadBalancer", "Value": dimension}],
                "Timestamp": at,
                "Value": count,
                "Unit": "Count",
            }
        ],
    )


def test_cloudwatch_request_rate(moto_url: str, svc: str) -> None:
    dimension = f"app/{svc}/50dc6c495c0c9188"
    now = datetime.now(UTC)
    _put_requests(moto_url, dimension, 900.0, now - timedelta(seconds=20))
    source = aws.CloudWatchMetricsSource(dimension, REGION, moto_url)
    assert source.request_rate(now.timestamp()) == pytest.approx(15.0)  # 900 per minute
    # Five minutes later nothing was published: the ALB had no requests -> 0, not unknown.
    assert source.request_rate(now.timestamp() + 600) == 0.0


def test_cloudwatch_unknown_metric_is_none(moto_url: str, svc: str) -> None:
    source = aws.CloudWatchMetricsSource(f"app/{svc}/1", REGION, moto_url)
    assert source.request_rate(time.time()) is None


def test_load_balancer_found_by_name(moto_url: str, svc: str) -> None:
    ec2 = client("ec2", moto_url)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for i, zone in enumerate(("us-east-1a", "us-east-1b"))
    ]
    arn = client("elbv2", moto_url).create_load_balancer(Name=f"hedgeform-{svc}", Subnets=subnets)[
        "LoadBalancers"
    ][0]["LoadBalancerArn"]
    source = aws.CloudWatchMetricsSource.for_load_balancer_name(
        f"hedgeform-{svc}", REGION, moto_url
    )
    assert source is not None
    assert source.load_balancer == aws.load_balancer_dimension(arn)
    assert source.load_balancer.startswith(f"app/hedgeform-{svc}/")
    assert aws.CloudWatchMetricsSource.for_load_balancer_name("nope", REGION, moto_url) is None


def test_spot_prices_latest_per_zone_with_ttl(moto_url: str, svc: str) -> None:
    now = [0.0]
    source = aws.AwsSpotPriceSource("g6.xlarge", REGION, moto_url, ttl=300, clock=lambda: now[0])
    calls: list[str] = []
    source._ec2.meta.events.register(
        "before-call.ec2.DescribeSpotPriceHistory", lambda **_: calls.append("x")
    )
    prices = source.spot_prices(["us-east-1a", "us-east-1b", "us-east-1z"])
    assert set(prices) == {"us-east-1a", "us-east-1b"}  # moto: static prices, no 1z
    assert all(p > 0 for p in prices.values())
    assert len(source.spot_prices([])) >= 5  # every AZ with a price
    assert len(calls) == 1  # cached
    now[0] = 301.0
    source.spot_prices(["us-east-1a"])
    assert len(calls) == 2  # expired, unlike SkyServe's cache-forever


def test_spot_prices_pick_the_newest_row_per_zone() -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    old, new = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_spot_price_history",
            {
                "SpotPriceHistory": [
                    {"AvailabilityZone": "us-east-1a", "SpotPrice": "0.50", "Timestamp": old},
                    {"AvailabilityZone": "us-east-1a", "SpotPrice": "0.30", "Timestamp": new},
                    {"AvailabilityZone": "us-east-1b", "SpotPrice": "0.40", "Timestamp": old},
                ],
                "NextToken": "page2",
            },
        )
        stub.add_response(
            "describe_spot_price_history",
            {
                "SpotPriceHistory": [
                    {"AvailabilityZone": "us-east-1c", "SpotPrice": "0.45", "Timestamp": new}
                ]
            },
        )
        source = aws.AwsSpotPriceSource("g6.xlarge", REGION, ec2=ec2)
        assert source.spot_prices([]) == {
            "us-east-1a": 0.30,
            "us-east-1b": 0.40,
            "us-east-1c": 0.45,
        }


def test_capacity_error_from_the_real_botocore_message_classifies() -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    with Stubber(ec2) as stub:
        stub.add_client_error(
            "run_instances",
            service_error_code="InsufficientInstanceCapacity",
            service_message="We currently do not have sufficient g6.xlarge capacity in the "
            "Availability Zone you requested (us-east-1a).",
            http_status_code=500,
        )
        with pytest.raises(AdapterError) as caught:
            aws.call(ec2, "run_instances", ImageId="ami-1", MinCount=1, MaxCount=1)
    message = str(caught.value)
    assert "\n" not in message
    assert classify_launch_error("aws", message) is FailureKind.CAPACITY


def test_throttling_forever_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # The Stubber answers before botocore's retry loop, so this checks only the mapping;
    # the retries themselves are exercised below through a before-send hook.
    ec2 = boto3.client("ec2", region_name=REGION)
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_spot_price_history", "RequestLimitExceeded", "slow down")
        source = aws.AwsSpotPriceSource("g6.xlarge", REGION, ec2=ec2)
        with pytest.raises(ThrottledError) as caught:
            source.spot_prices([])
    assert str(caught.value).startswith(
        "AWS ec2:describe_spot_price_history still throttled (RequestLimitExceeded)"
    )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


THROTTLED = (
    b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit "
    b"exceeded.</Message></Error></Errors><RequestID>r</RequestID></Response>"
)


def _throttle(times: int, seen: list[int]) -> Any:
    def hook(request: Any, **_: Any) -> AWSResponse | None:
        seen.append(1)
        if len(seen) <= times:
            return AWSResponse(request.url, 503, {}, _Raw(THROTTLED))
        return None  # go on to moto

    return hook


@pytest.mark.parametrize(("throttles", "succeeds"), [(2, True), (99, False)])
def test_botocore_adaptive_retries_throttling(
    moto_url: str, monkeypatch: pytest.MonkeyPatch, throttles: int, succeeds: bool
) -> None:
    from botocore.retries.bucket import TokenBucket

    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)  # backoff is computed, just not slept
    # Adaptive mode's client-side rate limiter waits on a condition variable after a throttle
    # (seconds of real time); let it through so the test stays fast.
    monkeypatch.setattr(TokenBucket, "_acquire", lambda self, amount, block: True)
    ec2 = aws.aws_client("ec2", REGION, moto_url, max_attempts=4)
    seen: list[int] = []
    ec2.meta.events.register("before-send.ec2.DescribeSpotPriceHistory", _throttle(throttles, seen))
    source = aws.AwsSpotPriceSource("g6.xlarge", REGION, ec2=ec2)
    if succeeds:
        assert source.spot_prices(["us-east-1a"])
        assert len(seen) == 3
    else:
        with pytest.raises(ThrottledError, match=r"still throttled \(RequestLimitExceeded\)"):
            source.spot_prices([])
        assert len(seen) == 4  # max_attempts, each one a real request through the hook
    assert sleeps and all(s >= 0 for s in sleeps)


def test_missing_credentials_name_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CredentialsError) as caught:
        aws.SqsNoticeSource("q", REGION, "http://127.0.0.1:9")
    message = str(caught.value)
    assert "AWS_ACCESS_KEY_ID" in message and "AWS_PROFILE" in message and "\n" not in message


def test_rejected_credentials(moto_url: str, svc: str) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_instances", "AuthFailure", "AWS was not able to validate")
        with pytest.raises(CredentialsError, match="rejected the credentials"):
            aws.describe_instances(ec2, ["i-1"])


def test_an_endpoint_that_is_not_aws_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """HEDGEFORM_AWS_ENDPOINT_URL pointing at some other HTTP server (a user's typo, a proxy
    answering 404 pages) was a 92-line botocore traceback (ResponseParserError)."""
    import http.server
    import threading

    class NotAws(http.server.SimpleHTTPRequestHandler):  # POST: 501 with an HTML page
        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotAws)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(key, "testing")
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ec2 = aws.aws_client("ec2", "us-east-1", url, max_attempts=1)
        with pytest.raises(AdapterError) as caught:
            aws.call(ec2, "describe_instances")
    finally:
        server.shutdown()
    message = str(caught.value)
    assert "is the endpoint URL an AWS service or emulator?" in message, message
    assert "\n" not in message
