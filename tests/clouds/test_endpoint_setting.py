"""The emulator endpoint setting (HEDGEFORM_AWS_ENDPOINT_URL / aws_endpoint_url) is a plain
http(s) URL: it lands in every AWS provider block and API client (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.clouds.settings import load_settings
from reconciler.errors import SettingsError

ENV = "HEDGEFORM_AWS_ENDPOINT_URL"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("http://127.0.0.1:4566", "http://127.0.0.1:4566"), ("https://emu.test/", "https://emu.test")],
)
def test_an_endpoint_is_kept(value: str, expected: str, tmp_path: Path) -> None:
    assert load_settings(tmp_path / "none.yaml", {ENV: value}).aws_endpoint_url == expected


@pytest.mark.parametrize(
    "value",
    [
        "ftp://h",
        "http://",
        "http://h:99999",
        "http://h:abc",
        "http://[::1",
        "http://h/ x",
        "http://h/?q=1",
        "127.0.0.1:4566",
        "junk",
    ],
)
def test_a_bad_endpoint_is_one_line_naming_the_variable(value: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path / "none.yaml", {ENV: value})
    assert str(err.value).startswith(f"{ENV} is not an endpoint URL")
    assert "\n" not in str(err.value)


def test_an_endpoint_with_a_password_is_refused_without_repeating_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path / "none.yaml", {ENV: "http://user:s3cret@emu.test"})
    assert "s3cret" not in str(err.value)


def test_the_settings_file_key_is_named_when_it_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "svc.settings.yaml"
    path.write_text("aws_endpoint_url: 'not a url'\n")
    with pytest.raises(SettingsError, match=r"svc\.settings\.yaml: aws_endpoint_url is not an"):
        load_settings(path, {})


ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0b2c1e7a-8f7d-4a55-9a3e-1c2d3e4f5a6b"


def test_a_certificate_and_cidrs_reach_the_aws_stack_context(tmp_path: Path) -> None:
    from reconciler.clouds.aws.settings import stack_context

    path = tmp_path / "svc.settings.yaml"
    path.write_text(
        f"aws_certificate_arns: {{us-east-1: '{ARN}'}}\n"
        "allowed_cidrs: [203.0.113.0/24, 198.51.100.0/24]\n"
    )
    cloud = load_settings(path, {}).cloud
    assert stack_context(cloud, "us-east-1") == {
        "certificate_arn": ARN,
        "allowed_cidrs": ["203.0.113.0/24", "198.51.100.0/24"],
    }
    assert stack_context(cloud, "us-west-2")["certificate_arn"] == ""  # plain HTTP there


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "HEDGEFORM_AWS_CERTIFICATE_ARNS": f"us-east-1={ARN}",
        "HEDGEFORM_ALLOWED_CIDRS": "10.0.0.0/8",
    }
    cloud = load_settings(tmp_path / "none.yaml", env).cloud
    assert cloud.certificate_arns == {"us-east-1": ARN}
    assert cloud.allowed_cidrs == ("10.0.0.0/8",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"aws_certificate_arns: {{us-west-2: '{ARN}'}}", "the certificate is in us-east-1"),
        ("aws_certificate_arns: {us-east-1: 'arn:aws:iam::1:x'}", "not an ACM certificate ARN"),
        ("allowed_cidrs: [10.0.0.1/8]", "'10.0.0.1/8' is not an IPv4 CIDR block"),
        ("allowed_cidrs: ['::/0']", "is not an IPv4 CIDR block"),
        ("allowed_cidrs: []", "empty: name at least one CIDR block"),
        ("allowed_cidrs: 10.0.0.0/8", "`allowed_cidrs` must be a list"),
    ],
)
def test_bad_endpoint_security_settings_are_one_line(
    text: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "svc.settings.yaml"
    path.write_text(text + "\n")
    with pytest.raises(SettingsError) as err:
        load_settings(path, {})
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(str(path))


def test_the_public_plain_http_default_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from reconciler.clouds.aws import settings as aws_settings

    aws_settings._SAID.clear()
    cloud = load_settings(tmp_path / "none.yaml", {}).cloud
    with caplog.at_level("WARNING"):
        aws_settings.stack_context(cloud, "us-east-1")
        aws_settings.stack_context(cloud, "us-east-1")
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1
    assert "serves plain HTTP on port 80 to 0.0.0.0/0" in notes[0]


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "junk", "http://[::1"])
def test_signals_endpoint_url_is_checked_the_same_way(url: str) -> None:
    """`hedgeform signals --endpoint-url` (a second way in) gets the same one line, not a
    traceback from the HTTP client (found by a user-eye check of issue 10)."""
    from click.testing import CliRunner

    from reconciler.cli import main

    result = CliRunner().invoke(
        main, ["signals", "llama-cloud", "--cloud", "aws", "--endpoint-url", url]
    )
    assert result.exit_code == 1
    assert result.output.strip().endswith(
        "--endpoint-url is not an endpoint URL: give http(s)://HOST[:PORT], without "
        "credentials, query or spaces"
    )
    assert "Traceback" not in result.output
