"""An env declared `null` (from the environment) that the environment does not set is refused
in one line naming it, on every cloud, before anything is planned; `status` and `destroy`
still work without it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.errors import SpecError
from reconciler.sandbox import market_daemon
from reconciler.spec import ServiceSpec, load_spec, parse_spec
from reconciler.spec.envs import missing_from_environment, require_environment

REPO = Path(__file__).resolve().parents[2]
MESSAGE = (
    "HF_TOKEN is declared null in services/{svc}.yaml (envs) and is not set in the "
    "environment: export HF_TOKEN=... or give it a value"
)


def spec_with(base: dict[str, Any], **extra: object) -> ServiceSpec:
    return parse_spec({**base, **extra}, name="svc", source="svc.yaml")


def test_only_unset_null_names_are_missing(base: dict[str, Any]) -> None:
    spec = spec_with(base, envs={"A": None, "B": None, "C": "value"}, secrets={"S": None})
    assert missing_from_environment(spec, {}) == ["A", "B", "S"]
    assert missing_from_environment(spec, {"A": "x", "B": "", "S": "s"}) == []  # "" is set
    assert missing_from_environment(spec, {"B": "x"}) == ["A", "S"]


def test_the_refusal_is_one_line_naming_the_file_and_the_section(base: dict[str, Any]) -> None:
    spec = spec_with(base, envs={"HF_TOKEN": None})
    with pytest.raises(SpecError) as err:
        require_environment(spec, {}, "services/llama.yaml")
    assert str(err.value) == MESSAGE.format(svc="llama")
    require_environment(spec, {"HF_TOKEN": "hf_x"}, "services/llama.yaml")


def test_several_names_and_secrets_are_one_line_too(base: dict[str, Any]) -> None:
    spec = spec_with(base, envs={"A": None}, secrets={"B": None})
    with pytest.raises(SpecError) as err:
        require_environment(spec, {}, "services/svc.yaml")
    assert str(err.value) == (
        "A, B are declared null in services/svc.yaml (envs and secrets) and are not set in "
        "the environment: export A=... B=... or give them values"
    )


def test_the_sandbox_service_needs_nothing_from_the_environment() -> None:
    # `make apply SERVICE=llama` on a fresh clone, with no env set
    assert missing_from_environment(load_spec(REPO / "services" / "llama.yaml"), {}) == []


LOCATIONS = {
    "local": "    - cloud: local\n      region: local-1\n      zone: local-1a\n",
    "aws": "    - cloud: aws\n      region: us-east-1\n",
    "gcp": "    - cloud: gcp\n      region: us-central1\n",
    "azure": "    - cloud: azure\n      region: eastus\n",
}


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "services").mkdir()
    (tmp_path / "terraform").symlink_to(REPO / "terraform")
    text = (REPO / "services" / "llama-cloud.yaml").read_text()
    start = text.index("  any_of:\n") + len("  any_of:\n")
    end = text.index("  use_spot:")
    assert "HF_TOKEN: null" in text
    for cloud, location in LOCATIONS.items():
        spec = text[:start] + location + text[end:]
        (tmp_path / "services" / f"{cloud}-svc.yaml").write_text(spec)
        assert load_spec(tmp_path / "services" / f"{cloud}-svc.yaml").envs_from_environment
    yield tmp_path
    market_daemon.stop(tmp_path / "state" / "local-svc" / "sandbox")  # if one got that far


@pytest.mark.parametrize("cloud", sorted(LOCATIONS))
@pytest.mark.parametrize(
    "command", [["plan"], ["plan", "--render-only"], ["apply"], ["run", "--max-ticks", "1"]]
)
def test_every_command_that_plans_refuses_before_anything_is_planned(
    root: Path, cloud: str, command: list[str]
) -> None:
    service = f"{cloud}-svc"
    result = CliRunner().invoke(
        main, [command[0], service, *command[1:], "--root", str(root)], env={"HF_TOKEN": None}
    )
    assert result.exit_code != 0
    assert result.output == f"Error: {MESSAGE.format(svc=service)}\n"
    assert not list(root.rglob("terraform.tfvars.json")), "nothing planned"
    assert not (root / "state" / service / "plans").exists()


def test_status_and_destroy_work_without_it(root: Path) -> None:
    for command in ("status", "destroy"):
        result = CliRunner().invoke(
            main, [command, "local-svc", "--root", str(root)], env={"HF_TOKEN": None}
        )
        assert result.exit_code == 0, result.output
        assert "HF_TOKEN" not in result.output
