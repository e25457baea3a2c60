"""What reading a stack's state costs: `terraform state pull` (the way the reconciler reads a
remote state, issue 12) against reading the local state file, for the local backend and for
S3 with a DynamoDB lock on the test AWS emulator (moto in this process).

Run: `.venv/bin/python bench/bench_state_pull.py [--repeats N]` (needs `make setup`). The
machine is small and noisy: compare the figures within one run (docs/clouds.md records one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler.terraform.backend import parse_state_backend  # noqa: E402
from reconciler.terraform.binaries import resolve_tools  # noqa: E402
from reconciler.terraform.runner import CliTerraformRunner, RunnerConfig  # noqa: E402
from tests.emulators import aws as emulator  # noqa: E402

MODULE = ROOT / "tests" / "terraform" / "fixtures" / "null_module"
S3 = "s3://hf-bench?dynamodb_table=hf-bench-locks&region=us-east-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[key] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    with emulator.running() as url, tempfile.TemporaryDirectory() as tmp:
        aws = {"endpoint_url": url, "region_name": "us-east-1"}
        boto3.client("s3", **aws).create_bucket(Bucket="hf-bench")
        boto3.client("dynamodb", **aws).create_table(
            TableName="hf-bench-locks",
            KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for name, url_or_local in (("local", "local"), ("s3 (emulator)", S3)):
            backend = parse_state_backend(url_or_local, "bench", endpoint_url=url)
            stack_dir = Path(tmp) / name.split()[0] / "svc" / "local-1"
            stack_dir.mkdir(parents=True)
            (stack_dir / "terraform.tfvars.json").write_text(json.dumps({"value": "a"}))
            runner = CliTerraformRunner(
                stack_dir,
                MODULE,
                resolve_tools(ROOT),
                config=RunnerConfig(state_backend=backend, service="svc"),
            )
            runner.apply_saved_plan(runner.plan().plan_path)
            runner.state_pull()  # warm: init done
            pulls = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                runner.state_pull()
                pulls.append(time.perf_counter() - t0)
            line = f"{name:14} state pull median {statistics.median(pulls) * 1000:7.1f} ms"
            if not backend.remote:
                t0 = time.perf_counter()
                (stack_dir / "terraform.tfstate").read_bytes()
                line += f", file read {(time.perf_counter() - t0) * 1000:.3f} ms"
            print(line, flush=True)


if __name__ == "__main__":
    main()
