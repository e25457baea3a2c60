"""GCP and Azure adapters against an HTTP fake on 127.0.0.1 serving the real APIs' JSON
shapes (pagination via nextPageToken / nextLink, 401, 429)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.identity import EnvironmentCredential

from reconciler.clouds.azure import signals as azure
from reconciler.clouds.base import InstanceRef, rfc3339
from reconciler.clouds.gcp import signals as gcp
from reconciler.clouds.rest import StaticToken, retrying_session
from reconciler.errors import AdapterError, CredentialsError, ThrottledError
from reconciler.policy import Notice, NoticeKind

from .conftest import FakeApi

NOW = 1_750_000_000.0
PROJECT = "proj-1"
SUB = "00000000-1111-2222-3333-444444444444"
FAST = {"session": retrying_session(max_attempts=3, backoff_factor=0.001)}


def operation(op_id: str, zone: str, instance: str, at: float) -> dict[str, Any]:
    base = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{zone}"
    return {
        "kind": "compute#operation",
        "id": op_id,
        "name": f"systemevent-{op_id}",
        "zone": base,
        "operationType": "compute.instances.preempted",
        "targetLink": f"{base}/instances/{instance}",
        "status": "DONE",
        "statusMessage": "Instance was preempted.",
        "user": "system",
        "insertTime": rfc3339(at).replace("Z", ".000-00:00"),
    }


def zone_ops_path(zone: str) -> str:
    return f"/compute/v1/projects/{PROJECT}/zones/{zone}/operations"


def test_gcp_preemptions_across_zones_and_pages(fake_api: FakeApi) -> None:
    def zone_a(path: str, query: dict[str, str]) -> Any:
        assert query["filter"] == 'operationType="compute.instances.preempted"'
        if query.get("pageToken") == "p2":
            return 200, {"items": [operation("2", "us-central1-a", "hf-llama-r-2", NOW - 5)]}
        return 200, {
            "items": [operation("1", "us-central1-a", "hf-llama-r-1", NOW - 10)],
            "nextPageToken": "p2",
        }

    fake_api.routes[zone_ops_path("us-central1-a")] = zone_a
    fake_api.routes[zone_ops_path("us-central1-b")] = [
        (
            200,
            {
                "items": [
                    operation("3", "us-central1-b", "someone-elses-vm", NOW - 3),
                    operation("4", "us-central1-b", "hf-llama-r-4", NOW - 7200),  # too old
                ]
            },
        )
    ]
    clock = [NOW]
    source = gcp.GcpPreemptionSource(
        PROJECT,
        StaticToken("tok"),
        zones=["us-central1-a", "us-central1-b"],
        name_prefix="hf-llama-",
        base_url=fake_api.url + "/compute/v1",
        clock=lambda: clock[0],
        **FAST,
    )
    assert source.poll() == [
        Notice(NoticeKind.PREEMPTED, "r-1", "us-central1-a", NOW - 10),
        Notice(NoticeKind.PREEMPTED, "r-2", "us-central1-a", NOW - 5),
    ]
    assert all(auth == "Bearer tok" for _, _, auth in fake_api.requests)
    clock[0] += 30
    assert source.poll() == []  # the same operations again: already reported


def test_gcp_aggregated_list_and_instance_mapping(fake_api: FakeApi) -> None:
    fake_api.routes[f"/compute/v1/projects/{PROJECT}/aggregated/operations"] = [
        (
            200,
            {
                "kind": "compute#operationAggregatedList",
                "items": {
                    "zones/europe-west4-b": {
                        "operations": [operation("9", "europe-west4-b", "vm-9", NOW - 1)]
                    },
                    "regions/europe-west4": {"warning": {"code": "NO_RESULTS_ON_PAGE"}},
                },
            },
        )
    ]
    source = gcp.GcpPreemptionSource(
        PROJECT,
        StaticToken("t"),
        instances={"vm-9": InstanceRef("r-9", "europe-west4-b")},
        base_url=fake_api.url + "/compute/v1",
        clock=lambda: NOW,
        **FAST,
    )
    assert source.poll() == [Notice(NoticeKind.PREEMPTED, "r-9", "europe-west4-b", NOW - 1)]


def test_gcp_401_names_the_credentials(fake_api: FakeApi) -> None:
    fake_api.routes[zone_ops_path("us-central1-a")] = [
        (
            401,
            {
                "error": {
                    "code": 401,
                    "message": "Request had invalid authentication credentials.",
                    "status": "UNAUTHENTICATED",
                }
            },
        )
    ]
    source = gcp.GcpPreemptionSource(
        PROJECT,
        StaticToken("bad"),
        zones=["us-central1-a"],
        base_url=fake_api.url + "/compute/v1",
        **FAST,
    )
    with pytest.raises(CredentialsError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        source.poll()


def test_gcp_429_then_success_is_retried(fake_api: FakeApi) -> None:
    too_many = (
        429,
        {"error": {"code": 429, "message": "Rate Limit Exceeded"}},
        {"Retry-After": "0"},
    )
    fake_api.routes[zone_ops_path("us-central1-a")] = [too_many, too_many, (200, {"items": []})]
    source = gcp.GcpPreemptionSource(
        PROJECT,
        StaticToken("t"),
        zones=["us-central1-a"],
        base_url=fake_api.url + "/compute/v1",
        **FAST,
    )
    assert source.poll() == []
    assert len(fake_api.requests) == 3


def test_gcp_429_forever_is_one_line(fake_api: FakeApi) -> None:
    fake_api.routes[zone_ops_path("us-central1-a")] = [(429, {"error": {"message": "slow"}})]
    source = gcp.GcpPreemptionSource(
        PROJECT,
        StaticToken("t"),
        zones=["us-central1-a"],
        base_url=fake_api.url + "/compute/v1",
        max_attempts=3,
        **FAST,
    )
    with pytest.raises(ThrottledError) as caught:
        source.poll()
    assert "429" in str(caught.value) and "\n" not in str(caught.value)
    assert len(fake_api.requests) == 3


def test_gcp_names_are_checked_before_they_reach_a_filter() -> None:
    with pytest.raises(ValueError, match="URL map"):
        gcp.CloudMonitoringMetricsSource(PROJECT, StaticToken("t"), url_map='x" OR "1')


def test_gcp_request_rate(fake_api: FakeApi) -> None:
    def series(path: str, query: dict[str, str]) -> Any:
        assert 'metric.type="loadbalancing.googleapis.com/https/request_count"' in query["filter"]
        assert 'resource.labels.url_map_name="hedgeform-llama"' in query["filter"]
        assert query["aggregation.perSeriesAligner"] == "ALIGN_RATE"
        if query.get("pageToken"):
            return 200, {
                "timeSeries": [
                    {
                        "points": [
                            {
                                "interval": {"endTime": rfc3339(NOW - 60)},
                                "value": {"int64Value": "2"},
                            }
                        ]
                    }
                ]
            }
        return 200, {
            "timeSeries": [
                {
                    "metricKind": "GAUGE",
                    "valueType": "DOUBLE",
                    "points": [
                        {
                            "interval": {
                                "startTime": rfc3339(NOW - 120),
                                "endTime": rfc3339(NOW - 60),
                            },
                            "value": {"doubleValue": 12.5},
                        },
                        {
                            "interval": {
                                "startTime": rfc3339(NOW - 180),
                                "endTime": rfc3339(NOW - 120),
                            },
                            "value": {"doubleValue": 3.0},
                        },
                    ],
                }
            ],
            "nextPageToken": "more",
        }

    fake_api.routes[f"/v3/projects/{PROJECT}/timeSeries"] = series
    source = gcp.CloudMonitoringMetricsSource(
        PROJECT, StaticToken("t"), url_map="hedgeform-llama", base_url=fake_api.url + "/v3", **FAST
    )
    assert source.request_rate(NOW) == pytest.approx(14.5)  # newest point of each series


def test_gcp_request_rate_without_points(fake_api: FakeApi) -> None:
    fake_api.routes[f"/v3/projects/{PROJECT}/timeSeries"] = [(200, {})]
    kwargs: dict[str, Any] = {"base_url": fake_api.url + "/v3", **FAST}
    assert (
        gcp.CloudMonitoringMetricsSource(PROJECT, StaticToken("t"), **kwargs).request_rate(NOW)
        is None
    )
    idle = gcp.CloudMonitoringMetricsSource(
        PROJECT, StaticToken("t"), absent_is_zero=True, **kwargs
    )
    assert idle.request_rate(NOW) == 0.0


def test_gcp_missing_credentials_message() -> None:
    # conftest points GOOGLE_APPLICATION_CREDENTIALS at a file that does not exist.
    with pytest.raises(CredentialsError) as caught:
        gcp.GoogleAuthTokens().token()
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(caught.value)
    assert "\n" not in str(caught.value)


# -- Azure ------------------------------------------------------------------------------------

ACTIVITY = f"/subscriptions/{SUB}/providers/Microsoft.Insights/eventtypes/management/values"


def event(vm: str, op: str, status: str, correlation: str, at: float) -> dict[str, Any]:
    rid = (
        f"/subscriptions/{SUB}/resourceGroups/hedgeform-llama/providers/"
        f"Microsoft.Compute/virtualMachines/{vm}"
    )
    return {
        "caller": "Microsoft.Compute",
        "channels": "Operation",
        "correlationId": correlation,
        "eventDataId": f"{correlation}-{status}",
        "eventName": {"value": "EndRequest", "localizedValue": "End request"},
        "category": {"value": "Administrative", "localizedValue": "Administrative"},
        "eventTimestamp": rfc3339(at).replace("Z", ".1234567Z"),
        "id": f"{rid}/events/{correlation}/ticks/638500000000000000",
        "level": "Informational",
        "operationName": {"value": op, "localizedValue": "Evict Spot Virtual Machine"},
        "resourceGroupName": "hedgeform-llama",
        "resourceId": rid,
        "resourceType": {"value": "Microsoft.Compute/virtualMachines"},
        "status": {"value": status, "localizedValue": status},
        "subscriptionId": SUB,
    }


EVICT = "Microsoft.Compute/virtualMachines/evictSpotVM/action"


def test_azure_evictions_paged_deduped_and_mapped(fake_api: FakeApi) -> None:
    def values(path: str, query: dict[str, str]) -> Any:
        if query.get("$skipToken") == "2":
            return 200, {
                "value": [
                    event("HF-LLAMA-R-1", EVICT, "Succeeded", "c1", NOW - 50),  # same eviction
                    event("hf-llama-r-2", EVICT, "Failed", "c2", NOW - 40),
                    event(
                        "hf-llama-r-3",
                        "Microsoft.Compute/virtualMachines/write",
                        "Succeeded",
                        "c3",
                        NOW,
                    ),
                    event("unmapped-vm", EVICT, "Succeeded", "c4", NOW - 30),
                ]
            }
        assert query["api-version"] == "2015-04-01"
        assert "eventTimestamp ge '" in query["$filter"]
        assert "resourceGroupName eq 'hedgeform-llama'" in query["$filter"]
        return 200, {
            "value": [event("hf-llama-r-1", EVICT, "Started", "c1", NOW - 60)],
            "nextLink": f"{fake_api.url}{ACTIVITY}?api-version=2015-04-01&$skipToken=2",
        }

    fake_api.routes[ACTIVITY] = values
    refs = {
        "hf-llama-r-1": InstanceRef("r-1", "eastus-1"),
        "hf-llama-r-2": InstanceRef("r-2", "eastus-2"),
        "hf-llama-r-3": InstanceRef("r-3", "eastus-3"),
    }
    source = azure.AzureEvictionSource(
        SUB,
        StaticToken("t"),
        instances=refs,
        resource_group="hedgeform-llama",
        base_url=fake_api.url,
        clock=lambda: NOW,
        **FAST,
    )
    (notice,) = source.poll()
    assert (notice.kind, notice.replica_id, notice.zone) == (
        NoticeKind.PREEMPTED,
        "r-1",
        "eastus-1",
    )
    assert notice.at == pytest.approx(NOW - 60 + 0.123456)
    assert source.poll() == []  # seen


def test_azure_next_link_to_another_host_is_refused(fake_api: FakeApi) -> None:
    fake_api.routes[ACTIVITY] = [(200, {"value": [], "nextLink": "https://evil.example/steal"})]
    source = azure.AzureEvictionSource(
        SUB, StaticToken("t"), instances={}, base_url=fake_api.url, **FAST
    )
    with pytest.raises(AdapterError, match="refusing nextLink to another host"):
        source.poll()


def test_azure_401_and_403(fake_api: FakeApi) -> None:
    fake_api.routes[ACTIVITY] = [
        (
            401,
            {
                "error": {
                    "code": "InvalidAuthenticationToken",
                    "message": "The access token is invalid.",
                }
            },
        ),
        (
            403,
            {
                "error": {
                    "code": "AuthorizationFailed",
                    "message": "The client does not have authorization",
                }
            },
        ),
    ]
    source = azure.AzureEvictionSource(
        SUB, StaticToken("t"), instances={}, base_url=fake_api.url, **FAST
    )
    with pytest.raises(CredentialsError, match="AZURE_CLIENT_ID"):
        source.poll()
    with pytest.raises(AdapterError, match="HTTP 403: AuthorizationFailed: The client does not"):
        source.poll()


def test_azure_missing_credentials_message() -> None:
    with pytest.raises(CredentialsError) as caught:
        azure.AzureIdentityTokens(EnvironmentCredential()).token()
    message = str(caught.value)
    assert "AZURE_CLIENT_ID" in message and "az login" in message and "\n" not in message


def test_azure_subscription_must_be_a_guid() -> None:
    with pytest.raises(ValueError, match="GUID"):
        azure.AzureEvictionSource("nope", StaticToken("t"), instances={})
