"""Where a service's files live; every name that becomes a path is validated here first."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import BadNameError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_name(value: str, what: str = "service") -> str:
    if not NAME_RE.fullmatch(value):
        raise BadNameError(
            f"{what} name {value!r} is not a plain name: use lowercase letters, digits and '-' "
            "(^[a-z0-9][a-z0-9-]{0,62}$)"
        )
    return value


def settings_file_beside(spec_file: Path) -> Path:
    """`services/<service>.settings.yaml` for `services/<service>.yaml`: a service's cloud
    settings live next to its spec (`plan`, `apply` and `signals` read the same file)."""
    return spec_file.with_name(f"{spec_file.stem}.settings.yaml")


@dataclass(frozen=True)
class ServicePaths:
    root: Path
    service: str

    @classmethod
    def for_service(cls, service: str, root: Path = PROJECT_ROOT) -> ServicePaths:
        return cls(root, check_name(service))

    @property
    def spec_file(self) -> Path:
        return self.root / "services" / f"{self.service}.yaml"

    @property
    def settings_file(self) -> Path:
        """The optional per-service settings for real clouds (docs/clouds.md)."""
        return settings_file_beside(self.spec_file)

    @property
    def state_dir(self) -> Path:
        return self.root / "state" / self.service

    @property
    def sandbox_dir(self) -> Path:
        return self.state_dir / "sandbox"

    @property
    def plans_dir(self) -> Path:
        return self.state_dir / "plans"

    @property
    def memory_file(self) -> Path:
        return self.state_dir / "reconciler.json"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / ".reconcile.lock"

    @property
    def loop_lock_file(self) -> Path:
        """Held by `hedgeform run` for its whole life (and by `destroy`), with its pid."""
        return self.state_dir / ".loop.lock"

    def stack_dir(self, stack: str) -> Path:
        return self.state_dir / check_name(stack, "stack")

    def module_dir(self, cloud: str) -> Path:
        return self.root / "terraform" / "modules" / check_name(cloud, "cloud")


def ensure_private_dir(path: Path) -> Path:
    """Create `path` and its missing parents as 0700 directories, and tighten `path` to 0700
    if it exists: state holds replica addresses, plans and the reconciler's memory."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path
