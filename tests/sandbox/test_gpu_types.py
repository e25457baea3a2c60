"""A sandbox replica simulates its GPU type (issue 15): it serves completions one after
another at its type's rate, HAProxy weighs it by that rate, and the load generator sends a
seeded Poisson load and reports the share of requests within a latency target."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.backends.sandbox import SandboxCloud, SandboxSettings
from reconciler.errors import SandboxError
from reconciler.policy import Market
from reconciler.sandbox import replicas
from reconciler.sandbox.cli import sandbox
from reconciler.sandbox.haproxy import MAX_WEIGHT, weight_for
from reconciler.sandbox.loadgen import run_load
from reconciler.sandbox.replica_server import ReplicaConfig, ReplicaServer, ServerState
from reconciler.spec import load_spec
from reconciler.stacks import ManagedReplica
from tests.sandbox.conftest import serve_in_thread

REPO = Path(__file__).resolve().parents[2]


def test_completions_queue_behind_each_other_at_the_types_rate() -> None:
    state = ServerState(ReplicaConfig("r", "local-1a", "spot", max_rps=10.0))
    waits = [state.serve_slot() for _ in range(4)]
    # each waits for those queued before it, then 1/10 s of its own
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    assert waits[0] == pytest.approx(0.1, abs=0.02)
    assert all(g == pytest.approx(0.1, abs=0.02) for g in gaps), waits
    unlimited = ServerState(ReplicaConfig("r", "local-1a", "spot"))
    assert [unlimited.serve_slot() for _ in range(3)] == [0.0, 0.0, 0.0]


def _record(state_dir: Path, rid: str, max_rps: float) -> None:
    record = replicas.ReplicaRecord(
        rid, "local-1a", "spot", 1, 1, 0.0, 0.0, 0.0, "m", "", 1, max_rps=max_rps
    )
    path = replicas.record_path(state_dir, rid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record.to_json()))


def test_the_load_balancer_weighs_each_replica_by_its_types_rate(tmp_path: Path) -> None:
    _record(tmp_path, "a-a10g-spot-0", 8.0)
    _record(tmp_path, "a-l4-spot-1", 5.0)
    _record(tmp_path, "plain-spot-2", 0.0)
    _record(tmp_path, "huge-spot-3", 5000.0)
    _record(tmp_path, "tiny-spot-4", 0.2)
    assert weight_for(tmp_path, "a-a10g-spot-0") == 8
    assert weight_for(tmp_path, "a-l4-spot-1") == 5
    assert weight_for(tmp_path, "plain-spot-2") == 1  # no type: every member alike
    assert weight_for(tmp_path, "huge-spot-3") == MAX_WEIGHT
    assert weight_for(tmp_path, "tiny-spot-4") == 1
    assert weight_for(tmp_path, "no-record") == 1


def test_a_replica_record_without_a_rate_reads_as_unlimited() -> None:
    raw = {"replica_id": "r", "zone": "z", "market": "spot", "pid": 1, "port": 2,
           "launched_at": 0.0}  # fmt: skip
    assert replicas.ReplicaRecord.from_json(raw).max_rps == 0.0


def test_launch_refuses_a_rate_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="max rps must be 0-10000"):
        replicas.launch(tmp_path, "r-spot-0", "local-1a", "spot", max_rps=-1.0)
    result = CliRunner().invoke(
        sandbox,
        ["replica", "launch", "--state-dir", str(tmp_path), "--id", "r-spot-0", "--zone",
         "local-1a", "--market", "on_demand", "--max-rps", "20000"],
    )  # fmt: skip
    assert result.exit_code == 2 and "--max-rps" in result.output


def test_a_type_profiled_above_a_simulated_replicas_most_is_simulated_at_it(
    tmp_path: Path,
) -> None:
    # before: 20000 req/s went to the local module, whose bound (10000) failed `plan`
    (tmp_path / "services").mkdir()
    text = (REPO / "services" / "llama-mix.yaml").read_text()
    (tmp_path / "services" / "llama-mix.yaml").write_text(text)
    data = {"mix": {"profile": {"gpus": {"L4": {"max_rps": 5}, "A10G": {"max_rps": 20000}}}}}
    (tmp_path / "services" / "llama-mix.hedgeform.yaml").write_text(yaml.safe_dump(data))
    cloud = SandboxCloud(
        Path("/nonexistent"), SandboxSettings(),
        spec=load_spec(tmp_path / "services" / "llama-mix.yaml"),
    )  # fmt: skip
    kept = [
        ManagedReplica("a-l4-spot-0", "local-1a", Market.SPOT, accelerator="L4"),
        ManagedReplica("a-a10g-spot-1", "local-1a", Market.SPOT, accelerator="A10G"),
    ]
    assert cloud._max_rps(kept) == {"a-l4-spot-0": 5.0, "a-a10g-spot-1": replicas.MAX_RPS}


def test_sandbox_replicas_get_their_types_rate_only_with_a_per_accelerator_map() -> None:
    mix = load_spec(REPO / "services" / "llama-mix.yaml")
    cloud = SandboxCloud(Path("/nonexistent"), SandboxSettings(), spec=mix)
    kept = [
        ManagedReplica("a-l4-spot-0", "local-1a", Market.SPOT, accelerator="L4"),
        ManagedReplica("a-a10g-spot-1", "local-1a", Market.SPOT, accelerator="A10G"),
    ]
    assert cloud._max_rps(kept) == {"a-l4-spot-0": 5.0, "a-a10g-spot-1": 8.0}
    plain = load_spec(REPO / "services" / "llama.yaml")  # one scalar target: no limit
    cloud = SandboxCloud(Path("/nonexistent"), SandboxSettings(), spec=plain)
    assert cloud._max_rps([ManagedReplica("a-spot-0", "local-1a", Market.SPOT)]) == {}


@pytest.fixture
def slow_replica() -> Iterator[ReplicaServer]:
    yield from serve_in_thread(ReplicaConfig("slow", "local-1a", "spot", max_rps=20.0))


def test_a_load_near_the_rate_misses_a_tight_latency_target(
    slow_replica: ReplicaServer,
) -> None:
    url = f"http://127.0.0.1:{slow_replica.server_address[1]}"
    light = run_load(url, qps=4, duration_s=1.0, slo_ms=1000, poisson_seed=1)
    assert light.sent == 4 and light.slo_attainment == 1.0
    # 40 requests/s offered to a replica serving 20: the queue grows by 20 a second, so the
    # last requests wait about a second; with a 300 ms target many miss it.
    heavy = run_load(url, qps=40, duration_s=1.0, slo_ms=300, poisson_seed=1)
    assert heavy.successes == heavy.sent == 40
    assert heavy.slo_attainment is not None and heavy.slo_attainment < 0.75
    assert heavy.p99_ms is not None and heavy.p99_ms > 600


def test_poisson_sending_is_reproducible_and_evenly_spaced_by_default(
    slow_replica: ReplicaServer,
) -> None:
    url = f"http://127.0.0.1:{slow_replica.server_address[1]}"
    a = run_load(url, qps=5, duration_s=2.0, poisson_seed=7)
    b = run_load(url, qps=5, duration_s=2.0, poisson_seed=7)
    assert a.per_second == b.per_second  # the same seed sends in the same seconds
    even = run_load(url, qps=5, duration_s=2.0)
    assert even.per_second == [(5, 0), (5, 0)] and even.slo_attainment is None
    with pytest.raises(SandboxError, match="latency target must be > 0"):
        run_load(url, qps=5, duration_s=1.0, slo_ms=0)
