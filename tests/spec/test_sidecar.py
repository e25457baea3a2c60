"""The sidecar `services/<name>.hedgeform.yaml` (issue 15): a profile, headroom and caps for
a service's GPU mix, beside a SkyServe file that stays valid SkyServe YAML."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.backends.sandbox import zone_offers
from reconciler.errors import SpecError
from reconciler.policy import Memory, Observation, Signals, hedgeform_mix
from reconciler.policy.mixed import _requests_per_replica
from reconciler.spec import load_spec
from reconciler.spec.fingerprint import fingerprint, replica_fingerprint
from reconciler.spec.sidecar import MixSettings, oblivious_capacity

REPO = Path(__file__).resolve().parents[2]
PROFILE = """\
mix:
  profile:
    gpus:
      L4: {max_rps: [[6, 2], [3, 1]]}
      A10G: {max_rps: [[10, 4], [5, 2]]}
    distribution: [[0.5, 0.2], [0.2, 0.1]]
"""


def service(tmp_path: Path, sidecar: str | None, name: str = "llama-mix") -> Path:
    path = tmp_path / f"{name}.yaml"
    shutil.copy(REPO / "services" / "llama-mix.yaml", path)
    if sidecar is not None:
        (tmp_path / f"{name}.hedgeform.yaml").write_text(sidecar)
    return path


def test_the_size_oblivious_capacity_is_the_harmonic_mean_over_the_distribution() -> None:
    # 0.5/6 + 0.2/2 + 0.2/3 + 0.1/1 = 0.35 s per request
    assert oblivious_capacity([[6, 2], [3, 1]], [[0.5, 0.2], [0.2, 0.1]]) == pytest.approx(1 / 0.35)
    assert oblivious_capacity([[6, 0]], [[0.9, 0.1]]) == 0.0
    assert oblivious_capacity([[6, 0]], [[1.0, 0.0]]) == 6.0  # an empty bucket does not count


def test_a_sidecar_beside_the_service_is_read_and_leaves_the_digests_alone(
    tmp_path: Path,
) -> None:
    plain = load_spec(service(tmp_path / "a", None) if (tmp_path / "a").mkdir() is None else "")
    assert plain.mix is None
    (tmp_path / "b").mkdir()
    spec = load_spec(
        service(tmp_path / "b", PROFILE + "  max_utilization: 0.8\n  caps: {a10g: 2}\n")
    )
    assert spec.mix is not None and spec.mix.profile is not None
    assert spec.mix.serves("l4") == pytest.approx(1 / 0.35)
    assert spec.mix.max_utilization == 0.8 and spec.mix.cap("A10G") == 2
    # the policy applies it and no replica runs it: not a new version
    assert fingerprint(spec) == fingerprint(plain)
    assert replica_fingerprint(spec) == replica_fingerprint(plain)


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ("mixx: {}\n", r"mixx: unknown field \(expected mix, changes\)"),
        ("changes: yes\n", r"changes: True is not one of auto, review"),
        ("changes: manual\n", r"changes: 'manual' is not one of auto, review"),
        ("mix: {headroom: 0.5}\n", r"mix\.headroom: unknown field"),
        (PROFILE.replace("L4: {max_rps", "L4: {usd_per_hour: 1, max_rps"),
         r"mix\.profile\.gpus\.L4\.usd_per_hour: prices come from the clouds' offers"),
        (PROFILE.replace("A10G:", "H100:"),
         r"mix\.profile\.gpus\.H100: 'H100' is not an accelerator"),
        (PROFILE.replace("      A10G: {max_rps: [[10, 4], [5, 2]]}\n", ""),
         r"mix\.profile\.gpus: no figures for A10G"),
        (PROFILE.replace("[[6, 2], [3, 1]]", "[[6, 0], [3, 1]]"),
         r"mix\.profile\.gpus\.L4\.max_rps: 0 for a bucket the distribution sends requests to"),
        (PROFILE.replace("[[0.5, 0.2], [0.2, 0.1]]", "[[0.5, 0.2], [0.2, 0.2]]"),
         r"mix\.profile\.distribution: the shares sum to 1\.1"),
        ("mix: {max_utilization: 0}\n", r"mix\.max_utilization: 0 is not a share in \(0, 1\]"),
        ("mix: {max_utilization: true}\n", r"mix\.max_utilization: True is not a share"),
        # before: accepted as no caps at all
        ("mix: {caps: []}\n", r"mix\.caps: expected a mapping of accelerator"),
        ("mix: {caps: 0}\n", r"mix\.caps: expected a mapping of accelerator"),
        ("mix: {caps: {L4: -1}}\n", r"mix\.caps\.L4: -1 is not a whole number of replicas"),
        ("mix: {caps: {T4: 1}}\n", r"mix\.caps\.T4: 'T4' is not an accelerator"),
        # before: the last of the two won, silently
        ("mix: {caps: {l4: 0, L4: 3}}\n", r"mix\.caps\.L4: L4 is capped more than once"),
        # before: accepted, and a new service planned no replica at all (exit 0)
        ("mix: {caps: {L4: 0, A10G: 0}}\n", r"mix\.caps: the caps serve at most 0 requests/s, "
         r"less than the 10 of min_replicas \(2\) replicas of the smallest type"),
        ("mix: {caps: {L4: 1, A10G: 0}}\n", r"mix\.caps: the caps serve at most 5 requests/s"),
        ("mix: [1]\n", r"mix: expected a mapping"),
        # before: each named another field than the one that is wrong, or asked for the
        # usd_per_hour the sidecar refuses
        # before: accepted, and the capacity was the first one's, silently
        (PROFILE.replace("      A10G:", "      l4: {max_rps: [[1, 1], [1, 1]]}\n      A10G:"),
         r"mix\.profile\.gpus\.l4: L4 is given more than once"),
        ("mix: {profile: [1]}\n", r"mix\.profile: expected a mapping with gpus"),
        (PROFILE.replace("{max_rps: [[6, 2], [3, 1]]}", "6"),
         r"mix\.profile\.gpus\.L4: expected a mapping with max_rps$"),
        (PROFILE.replace("{max_rps: [[6, 2], [3, 1]]}", "{max_rsp: [[6, 2], [3, 1]]}"),
         r"mix\.profile\.gpus\.L4\.max_rsp: unknown field \(expected max_rps\)$"),
        (PROFILE.replace("{max_rps: [[6, 2], [3, 1]]}", "{}"),
         r"mix\.profile\.gpus\.L4\.max_rps: missing"),
        ("mix: {caps: {L4: 1}\n", r"hedgeform\.yaml"),  # not YAML: the file is named
        # before: 1e-200 beside 1e200 overflowed the policy's units in plan (a traceback)
        (PROFILE.replace("[[6, 2], [3, 1]]", "[[6, 2], [3, 1.0e-200]]"),
         r"mix\.profile\.gpus\.L4\.max_rps: 1e-200 is not a replica's requests/s: give 0 "
         r"\(cannot within the SLO\) or 0\.001 to 1e\+06$"),
        (PROFILE.replace("[[6, 2], [3, 1]]", "[[6, 20000000], [3, 1]]"),
         r"mix\.profile\.gpus\.L4\.max_rps: 2e\+07 is not a replica's requests/s"),
    ],
)  # fmt: skip
def test_every_bad_sidecar_is_one_line_naming_the_file_and_field(
    tmp_path: Path, sidecar: str, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(service(tmp_path, sidecar))
    line = str(info.value)
    assert "\n" not in line.strip() and "llama-mix.hedgeform.yaml" in line, line
    assert re.search(message, line), line


def test_a_mix_for_a_service_of_one_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "one.yaml"
    shutil.copy(REPO / "services" / "llama.yaml", path)
    (tmp_path / "one.hedgeform.yaml").write_text("mix: {max_utilization: 0.5}\n")
    with pytest.raises(SpecError, match=r"one\.hedgeform\.yaml: mix: the service asks for one"):
        load_spec(path)
    (tmp_path / "one.hedgeform.yaml").write_text("# nothing yet\n")
    assert load_spec(path).mix is None  # an empty sidecar is no mix setting


def _mix_counts(spec_path: Path, min_replicas: int) -> dict[str, int]:
    spec = load_spec(spec_path)
    rp = spec.service.replica_policy
    spec = replace(
        spec,
        service=replace(
            spec.service,
            replica_policy=replace(rp, min_replicas=min_replicas, max_replicas=min_replicas),
        ),
    )
    decision = hedgeform_mix(spec, Observation((), zone_offers(spec)), Signals(), Memory(), 0.0)
    return {t: m.target or 0 for t, m in decision.memory.groups}


def test_the_profile_and_caps_decide_the_mix(tmp_path: Path) -> None:
    # By the spec's targets (L4 5, A10G 8 req/s) A10G is the cheaper per request/s, and
    # 4 L4 units (20 req/s) run as 1 x L4 + 2 x A10G. A profile where L4 serves the request
    # mix at 5.7 req/s and A10G at 4.9 makes L4 the cheaper: the mix runs L4 only.
    l4_fast = PROFILE.replace("[[6, 2], [3, 1]]", "[[12, 4], [6, 2]]")
    runs = {}
    for name, sidecar in (
        ("targets", None),
        ("profile", l4_fast),
        ("capped", PROFILE + "  caps: {A10G: 1}\n"),
    ):
        (tmp_path / name).mkdir()
        runs[name] = _mix_counts(service(tmp_path / name, sidecar), 4)
    assert runs["targets"] == {"L4": 1, "A10G": 2}
    assert runs["profile"] == {"L4": 4, "A10G": 0}
    # PROFILE alone would run 1 x L4 + 2 x A10G; at most one A10G, L4 covers the rest
    # (4 units of 2.86 req/s = 11.4 req/s: 4 x L4)
    assert runs["capped"]["A10G"] <= 1
    per = {"L4": 1 / 0.35, "A10G": 1 / (0.5 / 10 + 0.2 / 4 + 0.2 / 5 + 0.1 / 2)}
    served = sum(n * per[t] for t, n in runs["capped"].items())
    assert served >= 4 * per["L4"] - 1e-9


def test_headroom_counts_each_replica_at_that_share_of_its_capacity(tmp_path: Path) -> None:
    spec = load_spec(service(tmp_path, PROFILE + "  max_utilization: 0.5\n"))
    assert spec.mix is not None
    rp = spec.service.replica_policy
    assert _requests_per_replica(rp, spec.mix, "L4") == pytest.approx(0.5 / 0.35)
    assert _requests_per_replica(rp, MixSettings(max_utilization=0.5), "L4") == 2.5  # of 5


def test_caps_that_serve_less_than_the_rate_hold_the_mix_at_what_they_serve(
    tmp_path: Path,
) -> None:
    """Caps may serve min_replicas' rate but not a higher one the autoscaler asks for: the
    mix runs what the caps allow (before: no mix fitted, and a new service ran nothing)."""
    runs = _mix_counts(service(tmp_path, "mix: {caps: {L4: 2, A10G: 2}}\n"), 8)  # 40 req/s
    assert runs == {"L4": 2, "A10G": 2}  # 26 req/s, all the caps allow
