"""clouds/checks.py: each cloud's settings check through the registry, then the front stack's;
the first missing setting is one line naming it and where it goes."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler.clouds.checks import check_cloud_settings
from reconciler.clouds.registry import CLOUDS
from reconciler.clouds.settings import CloudSettings, ProviderSettings
from reconciler.errors import SettingsError
from reconciler.spec import ServiceSpec, load_spec
from tests.clouds.hcl import PROJECT_ROOT

ALL = [("aws", "us-east-1"), ("aws", "us-west-2"), ("azure", "eastus"), ("gcp", "us-central1")]
COMPLETE = ProviderSettings(
    cloud=CloudSettings(
        images={"aws": "ami-0123456789abcdef0"},
        gcp_project="p",
        azure_admin_ssh_public_key="ssh-ed25519 AAAA k",
    ),
    azure_subscription_id="s",
    source="f.yaml",
)


@pytest.fixture
def spec(monkeypatch: pytest.MonkeyPatch) -> ServiceSpec:
    monkeypatch.setenv("HF_TOKEN", "x")
    return load_spec(PROJECT_ROOT / "services" / "llama-cloud.yaml")


def _with(settings: ProviderSettings, **cloud: object) -> ProviderSettings:
    return dataclasses.replace(settings, cloud=dataclasses.replace(settings.cloud, **cloud))


def test_complete_settings_pass(spec: ServiceSpec) -> None:
    check_cloud_settings(spec, ALL, COMPLETE)
    check_cloud_settings(spec, [], ProviderSettings())


def test_the_first_missing_setting_in_cloud_order_is_named(spec: ServiceSpec) -> None:
    bare = ProviderSettings(domain_name="x.example.com", source="f.yaml")
    expected = [
        "no AMI for aws us-west-2: set HEDGEFORM_AWS_IMAGES=us-west-2=ami-... or `aws_images`",
        "no GCP project: set GOOGLE_CLOUD_PROJECT or `gcp_project`",
        "no SSH public key for Azure VMs: set HEDGEFORM_AZURE_SSH_PUBLIC_KEY or "
        "`azure_ssh_public_key`",
        "no Azure subscription: set AZURE_SUBSCRIPTION_ID or `azure_subscription_id`",
        "the front stack needs both a DNS name and a Route 53 zone id: set HEDGEFORM_DNS_NAME "
        "and HEDGEFORM_DNS_ZONE_ID or `dns: {domain_name, zone_id}`",
    ]
    fixes = [
        lambda s: _with(s, images={"aws:us-west-2": "ami-1", "aws:us-east-1": "ami-2"}),
        lambda s: _with(s, gcp_project="p"),
        lambda s: _with(s, azure_admin_ssh_public_key="k"),
        lambda s: dataclasses.replace(s, azure_subscription_id="s"),
        lambda s: dataclasses.replace(s, zone_id="Z1"),
    ]
    settings = _with(bare, images={"aws:us-east-1": "ami-2"})
    for message, fix in zip(expected, fixes, strict=True):
        with pytest.raises(SettingsError) as caught:
            check_cloud_settings(spec, ALL, settings)
        assert str(caught.value) == f"{message} in f.yaml"
        settings = fix(settings)
    check_cloud_settings(spec, ALL, settings)


def test_only_the_clouds_named_are_checked(spec: ServiceSpec) -> None:
    check_cloud_settings(spec, [("gcp", "us-central1")], _with(ProviderSettings(), gcp_project="p"))
    with pytest.raises(SettingsError, match="no AMI for aws us-east-1"):
        check_cloud_settings(spec, [("aws", "us-east-1")], ProviderSettings())


def test_an_ami_in_the_spec_needs_no_aws_images(spec: ServiceSpec) -> None:
    ami = dataclasses.replace(
        spec, resources=dataclasses.replace(spec.resources, image_id="ami-0abc")
    )
    check_cloud_settings(ami, [("aws", "us-east-1")], ProviderSettings())
    gcp_image = dataclasses.replace(
        spec, resources=dataclasses.replace(spec.resources, image_id="projects/x/images/y")
    )
    with pytest.raises(SettingsError, match="no AMI for aws us-east-1"):
        check_cloud_settings(gcp_image, [("aws", "us-east-1")], ProviderSettings())


@pytest.mark.parametrize(
    ("cloud", "image", "fits"),
    [
        ("aws", "ami-0abc", True),
        ("aws", "projects/x", False),
        ("gcp", "projects/x/global/images/y", True),
        ("gcp", "https://www.googleapis.com/compute/v1/projects/x", True),
        ("gcp", "family/common-cu123", True),
        ("gcp", "ami-0abc", False),
        ("azure", "/subscriptions/s/resourceGroups/g/images/i", True),
        ("azure", "microsoft-dsvm:ubuntu-hpc:2204:latest", True),
        ("azure", "ami-0abc", False),
    ],
)
def test_each_cloud_knows_its_images(cloud: str, image: str, fits: bool) -> None:
    assert CLOUDS[cloud].image_fits(image) is fits
