"""`hedgeform signals` against moto (AWS) and the HTTP fake (GCP), and its one-line errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.clouds.aws import signals as aws
from reconciler.clouds.azure.apis import AzureApis
from reconciler.clouds.base import rfc3339
from reconciler.clouds.rest import StaticToken
from reconciler.engine.signals import signals
from reconciler.spec import load_spec

from .conftest import FakeApi
from .test_aws import client, make_queue, put_event, run_spot, spot_reclaim

SERVICE = """\
service:
  readiness_probe: /health
  replicas: 2
resources:
  any_of:
    - cloud: aws
      region: us-east-1
      zone: us-east-1a
    - cloud: aws
      region: us-east-1
      zone: us-east-1b
    - cloud: gcp
      region: us-central1
  use_spot: true
  accelerators: L4
"""


@pytest.fixture
def services(tmp_path: Path, svc: str) -> Path:
    (tmp_path / f"{svc}.yaml").write_text(SERVICE)
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(signals, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_signals_aws_json_from_moto(moto_url: str, svc: str, services: Path) -> None:
    make_queue(moto_url, svc)
    warned = run_spot(moto_url, "us-east-1a", "r-1", svc)
    reclaimed = run_spot(moto_url, "us-east-1b", "r-2", svc)
    put_event(moto_url, aws.INTERRUPTION_WARNING, {"instance-id": warned})
    spot_reclaim(moto_url, reclaimed)
    code, out, err = run(
        svc, "--cloud", "aws", "--endpoint-url", moto_url, "--services-dir", str(services), "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"service", "notices", "metrics", "prices", "notes"}
    kinds = {(n["kind"], n["replica_id"], n["zone"]) for n in data["notices"]}
    assert kinds == {("warning", "r-1", "us-east-1a"), ("preempted", "r-2", "us-east-1b")}
    assert data["metrics"] == {"aws/us-east-1": None}  # no load balancer yet: unknown
    assert set(data["prices"]["aws/us-east-1"]) == {"us-east-1a", "us-east-1b"}
    assert any("no load balancer" in n for n in data["notes"])
    # peeked, not consumed: the reconciler still gets the warning
    queue = aws.SqsNoticeSource(aws.notices_queue_name(svc), "us-east-1", moto_url)
    assert [n.replica_id for n in queue.poll()] == ["r-1"]
    assert client("sqs", moto_url)  # (cached client still usable)


def test_signals_before_the_first_apply_is_notes_not_errors(
    moto_url: str, svc: str, services: Path
) -> None:
    code, out, err = run(
        svc, "--cloud", "aws", "--endpoint-url", moto_url, "--services-dir", str(services)
    )
    assert code == 0, err
    assert "not found in us-east-1" in out and "rate    aws/us-east-1: unknown" in out


def test_signals_missing_aws_credentials_is_one_line(
    monkeypatch: pytest.MonkeyPatch, svc: str, services: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = run(svc, "--cloud", "aws", "--services-dir", str(services), "--json")
    assert code == 1 and out == ""
    assert err.startswith("Error: AWS credentials not found: set AWS_ACCESS_KEY_ID")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_signals_missing_gcp_credentials_is_one_line(svc: str, services: Path) -> None:
    code, _, err = run(svc, "--cloud", "gcp", "--services-dir", str(services))
    assert code == 1 and err.count("\n") == 1
    assert "GOOGLE_APPLICATION_CREDENTIALS" in err


def test_signals_gcp_against_the_http_fake(
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch, svc: str, services: Path
) -> None:
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "tok")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj-1")
    zone = "https://www.googleapis.com/compute/v1/projects/proj-1/zones"
    fake_api.routes["/compute/v1/projects/proj-1/aggregated/operations"] = [
        (
            200,
            {
                "items": {
                    "zones/us-central1-a": {
                        "operations": [
                            {
                                "id": "1",
                                "operationType": "compute.instances.preempted",
                                "zone": f"{zone}/us-central1-a",
                                "targetLink": f"{zone}/us-central1-a/instances/r-7",
                                "insertTime": rfc3339(time.time() - 5),
                            }
                        ]
                    },
                    "zones/europe-west4-a": {
                        "operations": [
                            {
                                "id": "2",
                                "operationType": "compute.instances.preempted",
                                "zone": f"{zone}/europe-west4-a",
                                "targetLink": f"{zone}/europe-west4-a/instances/x",
                                "insertTime": rfc3339(time.time() - 5),
                            }
                        ]
                    },
                }
            },
        )
    ]
    fake_api.routes["/v3/projects/proj-1/timeSeries"] = [(200, {})]
    code, out, err = run(
        svc,
        "--cloud",
        "gcp",
        "--endpoint-url",
        fake_api.url,
        "--services-dir",
        str(services),
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert [(n["replica_id"], n["zone"]) for n in data["notices"]] == [("r-7", "us-central1-a")]
    assert data["metrics"] == {"gcp/us-central1": None}
    assert "us-central1-a" in data["prices"]["gcp/us-central1"]
    assert any("static catalog" in n for n in data["notes"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad_Name"], "invalid service name 'Bad_Name'"),
        (["../etc"], "invalid service name"),
        (["nosuch"], "no such service file"),
    ],
)
def test_signals_bad_service(args: list[str], message: str, services: Path) -> None:
    code, _, err = run(*args, "--services-dir", str(services))
    assert code == 1 and message in err


def test_signals_bad_name_is_one_exact_line(services: Path) -> None:
    """The one name rule (reconciler.paths), one line on stderr, exit 1, before any file."""
    code, out, err = run("Bad_Name", "--services-dir", str(services))
    assert (code, out) == (1, "")
    assert err == "Error: invalid service name 'Bad_Name': use lowercase letters, digits and '-'\n"


def test_signals_reads_the_services_settings_file(
    fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch, svc: str, services: Path
) -> None:
    """The ProviderSettings the reconciler uses: the project and the instance type override
    come from services/<svc>.settings.yaml, not from the command's own lookups."""
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "tok")
    (services / f"{svc}.settings.yaml").write_text(
        "gcp_project: proj-2\ninstance_types:\n  gcp: a2-highgpu-1g\n"
    )
    fake_api.routes["/compute/v1/projects/proj-2/aggregated/operations"] = [(200, {})]
    fake_api.routes["/v3/projects/proj-2/timeSeries"] = [(200, {})]
    code, out, err = run(
        svc, "--cloud", "gcp", "--endpoint-url", fake_api.url, "--services-dir", str(services)
    )
    assert code == 0, err
    assert "/compute/v1/projects/proj-2/aggregated/operations" in fake_api.paths()
    # the catalog prices the overriding type, which it does not list (not g2-standard-8's)
    assert "prices  gcp/us-central1: none" in out


def test_signals_aws_endpoint_from_the_settings(
    moto_url: str, monkeypatch: pytest.MonkeyPatch, svc: str, services: Path
) -> None:
    monkeypatch.setenv("HEDGEFORM_AWS_ENDPOINT_URL", moto_url)
    code, out, err = run(svc, "--cloud", "aws", "--services-dir", str(services))
    assert code == 0, err
    assert "rate    aws/us-east-1: unknown" in out


def test_signals_missing_gcp_project_is_one_line(
    monkeypatch: pytest.MonkeyPatch, svc: str, services: Path
) -> None:
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "tok")
    code, out, err = run(svc, "--cloud", "gcp", "--services-dir", str(services))
    assert (code, out) == (1, "")
    assert err.startswith("Error: GCP project unknown: set GOOGLE_CLOUD_PROJECT")
    assert err.count("\n") == 1


def test_azure_peek_against_the_http_fake(fake_api: FakeApi, tmp_path: Path) -> None:
    """Azure's peek: the activity log read at the endpoint given, no rate, the region's
    catalog prices only."""
    sub = "00000000-1111-2222-3333-444444444444"
    activity = f"/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values"
    fake_api.routes[activity] = [(200, {"value": []})]
    (tmp_path / "svc.yaml").write_text(SERVICE.replace("accelerators: L4", "accelerators: T4"))
    apis = AzureApis(load_spec(tmp_path / "svc.yaml"), sub, StaticToken("t"))
    apis.use_endpoint(fake_api.url)
    seen = apis.peek("eastus", [], "Standard_NC4as_T4_v3", time.time())
    assert fake_api.paths() == [activity]
    assert (seen.notices, seen.request_rate) == ([], None)
    assert seen.prices is not None and sorted(seen.prices) == ["eastus-1", "eastus-2", "eastus-3"]
    assert any("layer 4" in note for note in seen.notes)


def test_signals_no_location_on_that_cloud(svc: str, services: Path) -> None:
    code, _, err = run(svc, "--cloud", "azure", "--services-dir", str(services))
    assert code == 1 and f"service {svc} has no location on azure" in err


def test_signals_unknown_cloud_is_a_usage_error(svc: str, services: Path) -> None:
    code, _, err = run(svc, "--cloud", "oracle", "--services-dir", str(services))
    assert code == 2 and "oracle" in err and "Traceback" not in err


def test_signals_local_reads_the_sandbox_feed(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(
        (Path(__file__).parents[2] / "services" / "llama.yaml").read_text()
    )
    state = tmp_path / "state"
    state.mkdir()
    (state / "notices.jsonl").write_text(
        json.dumps(
            {
                "kind": "warning",
                "replica_id": "r-1",
                "zone": "local-1b",
                "at": 1.0,
                "deadline": 31.0,
            }
        )
        + "\n"
    )
    code, out, err = run(
        "svc",
        "--cloud",
        "local",
        "--state-dir",
        str(state),
        "--services-dir",
        str(tmp_path),
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["notices"] == [
        {"cloud": "local", "kind": "warning", "replica_id": "r-1", "zone": "local-1b", "at": 1.0}
    ]
