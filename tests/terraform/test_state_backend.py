"""The `state_backend` setting: URLs parsed into a backend, one line for each bad one, and
the backend block each stack's root configuration gets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.errors import SettingsError
from reconciler.terraform.backend import LOCAL, parse_state_backend

WHERE = "HEDGEFORM_STATE_BACKEND"


def test_local_is_the_default_and_has_no_backend_block() -> None:
    assert parse_state_backend("", WHERE) is LOCAL
    assert parse_state_backend("local", WHERE) is LOCAL
    assert LOCAL.block("llama", "local-us-east-1") is None
    assert not LOCAL.remote


def test_s3_with_its_lock_table() -> None:
    backend = parse_state_backend(
        "s3://hf-state/teams/ml?dynamodb_table=hf-locks&region=us-east-1", WHERE
    )
    assert backend.block("llama", "aws-us-east-1") == {
        "s3": {
            "bucket": "hf-state",
            "key": "teams/ml/llama/aws-us-east-1/terraform.tfstate",
            "region": "us-east-1",
            "dynamodb_table": "hf-locks",
            "encrypt": True,
        }
    }
    assert backend.describe() == "s3://hf-state/teams/ml?dynamodb_table=hf-locks&region=us-east-1"


def test_s3_on_an_emulator_points_the_backend_and_its_lock_table_at_it() -> None:
    backend = parse_state_backend(
        "s3://hf-state?dynamodb_table=hf-locks&region=us-east-1",
        WHERE,
        endpoint_url="http://127.0.0.1:4566",
    )
    block = backend.block("llama", "front")
    assert block is not None
    config = block["s3"]
    assert config["key"] == "llama/front/terraform.tfstate"
    for key in ("endpoint", "dynamodb_endpoint", "sts_endpoint", "iam_endpoint"):
        assert config[key] == "http://127.0.0.1:4566"
    assert config["force_path_style"] is True


def test_gcs_and_azurerm() -> None:
    gcs = parse_state_backend("gcs://hf-state/prod", WHERE)
    assert gcs.block("llama", "gcp-us-central1") == {
        "gcs": {"bucket": "hf-state", "prefix": "prod/llama/gcp-us-central1"}
    }
    azure = parse_state_backend("azurerm://hfstate/tfstate/prod", WHERE)
    assert azure.block("llama", "azure-eastus") == {
        "azurerm": {
            "storage_account_name": "hfstate",
            "container_name": "tfstate",
            "key": "prod/llama/azure-eastus/terraform.tfstate",
        }
    }


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ftp://bucket", "not a state backend"),
        ("s3://a..b/p?dynamodb_table=t12&region=us-east-1", "not a valid S3 bucket name 'a..b'"),
        ("s3://192.168.1.1/p?dynamodb_table=t12&region=us-east-1", "not an IP address"),
        ("s3://xn--abc/p?dynamodb_table=t12&region=us-east-1", "not a valid S3 bucket name"),
        ("s3://data-s3alias/p?dynamodb_table=t12&region=us-east-1", "-s3alias"),
        ("s3://hf-state?region=us-east-1", "needs ?dynamodb_table"),
        ("s3://hf-state?dynamodb_table=hf-locks", "needs &region"),
        ("s3://Bad_Bucket?dynamodb_table=t1x&region=us-east-1", "not a valid S3 bucket"),
        ("s3://hf-state?dynamodb_table=a&region=us-east-1", "not a valid DynamoDB table"),
        ("s3://hf-state?dynamodb_table=hf-locks&region=mars", "not a valid AWS region"),
        ("s3://hf-state?dynamodb_table=hf-locks&region=us-east-1&acl=x", "unknown s3"),
        ("s3://hf-state/../etc?dynamodb_table=hf-locks&region=us-east-1", "prefix has a bad"),
        ("s3://hf-state/a//b?dynamodb_table=hf-locks&region=us-east-1", "prefix has a bad"),
        ("s3://user:secret@hf-state?dynamodb_table=hf-locks&region=us-east-1", "no credentials"),
        ("gcs://hf-state?x=1", "unknown gcs"),
        ("azurerm://hfstate", "needs ACCOUNT/CONTAINER"),
        ("azurerm://HF/tfstate", "not a valid Azure storage account"),
        ("azurerm://hfstate/tf--state", "not a valid Azure container"),
        ("s3://hf state", "no spaces"),
    ],
)
def test_a_bad_backend_is_one_line_that_says_what_is_wrong(value: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_state_backend(value, WHERE)
    message = str(caught.value)
    assert message.startswith(f"{WHERE}: ") and says in message, message
    assert "\n" not in message
    assert "secret" not in message


@given(st.text(max_size=80))
def test_any_text_is_a_backend_or_one_line(value: str) -> None:
    try:
        backend = parse_state_backend(value, WHERE)
    except SettingsError as exc:
        assert "\n" not in str(exc)
        return
    # Whatever was accepted renders keys made of checked parts only.
    block = backend.block("llama", "local-us-east-1")
    if block is not None:
        ((config,),) = [tuple(block.values())]
        key = config.get("key") or config.get("prefix", "")
        assert ".." not in key.split("/") and "//" not in key
