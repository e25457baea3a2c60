"""checkov over terraform/modules, offline, from its own virtualenv.

checkov pins older boto3/botocore, so it lives in .tools/checkov-venv (scripts/install-checkov.sh)
and never in .venv. Findings are fixed in the modules; the few accepted ones are skipped inline
with `#checkov:skip=<ID>:<reason>` next to the resource. This test fails on any new finding, on
a skip without a reason, and on a skip not listed below, so accepting a finding is reviewed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import pytest

from tests.clouds.hcl import MODULES, PROJECT_ROOT

CHECKOV = PROJECT_ROOT / ".tools" / "checkov-venv" / "bin" / "checkov"

# (check id, resource type.name) accepted on purpose; the reasons sit next to each resource.
ACCEPTED = {
    ("CKV_AWS_88", "aws_instance.replica"),  # public IP for egress without NAT
    ("CKV_AWS_91", "aws_lb.this"),  # ALB access logs need a bucket; CloudWatch has the counts
    ("CKV_AWS_150", "aws_lb.this"),  # deletion protection would block region removal
    ("CKV2_AWS_20", "aws_lb.this"),  # HTTP->HTTPS redirect only when a certificate is given
    ("CKV2_AWS_28", "aws_lb.this"),  # WAF is a per-deployment choice
    ("CKV_AWS_2", "aws_lb_listener.http"),  # plain HTTP without a certificate
    ("CKV_AWS_378", "aws_lb_target_group.replicas"),  # TLS ends at the ALB
    ("CKV_AWS_378", "aws_lb_target_group.typed"),  # as replicas: one group per GPU type
    ("CKV2_AWS_57", "aws_secretsmanager_secret.env"),  # third-party token: no AWS rotation
    ("CKV_GCP_40", "google_compute_instance.replica"),  # external IP for egress without NAT
    ("CKV_AZURE_42", "azurerm_key_vault.this"),  # soft delete, no purge protection
    ("CKV_AZURE_110", "azurerm_key_vault.this"),  # purge protection blocks re-creation
    ("CKV_AZURE_109", "azurerm_key_vault.this"),  # Deny once vault_allowed_cidrs is set
    ("CKV2_AZURE_32", "azurerm_key_vault.this"),  # no private endpoint: reconciler is outside
    ("CKV2_AWS_23", "aws_route53_record.alias"),  # LBs live in the region stacks' states
    ("CKV2_AWS_23", "aws_route53_record.ip"),
}


# Not --quiet: the JSON must list the skipped checks too, to review their reasons.


def _resource_key(resource: str) -> str:
    """`module.region.aws_lb.this` / `aws_instance.replica["x"]` -> `aws_lb.this`."""
    parts = resource.split("[", 1)[0].split(".")
    return ".".join(parts[-2:])


@pytest.fixture(scope="module")
def report() -> tuple[list[dict[str, Any]], float]:
    if not CHECKOV.is_file():
        pytest.skip("checkov not installed: run scripts/install-checkov.sh (own venv)")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    env.pop("BC_API_KEY", None)
    started = time.monotonic()
    run = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(MODULES),
            "--skip-download",
            "--compact",
            "--framework",
            "terraform",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert run.returncode in (0, 1), run.stderr[-2000:]
    data = json.loads(run.stdout)
    reports = data if isinstance(data, list) else [data]
    return reports, elapsed


@pytest.mark.slow
def test_checkov_finds_nothing_beyond_the_accepted_skips(
    report: tuple[list[dict[str, Any]], float],
) -> None:
    reports, elapsed = report
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, "\n".join(failed)
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert elapsed < 120, f"checkov took {elapsed:.1f} s"


@pytest.mark.slow
def test_every_skip_is_accepted_and_has_a_reason(
    report: tuple[list[dict[str, Any]], float],
) -> None:
    reports, _ = report
    skipped = [c for r in reports for c in r.get("results", {}).get("skipped_checks", [])]
    assert skipped, "expected the documented skips to show up"
    for check in skipped:
        key = (check["check_id"], _resource_key(check["resource"]))
        assert key in ACCEPTED, f"unreviewed skip {key}"
        reason = str(check.get("check_result", {}).get("suppress_comment", ""))
        assert len(reason.strip()) > 20, f"no reason for {key}"
    assert {(c["check_id"], _resource_key(c["resource"])) for c in skipped} == ACCEPTED
