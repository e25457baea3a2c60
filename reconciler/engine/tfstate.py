"""What Terraform manages, read from a stack's local state file (format version 4).

This is the level the reconciler works from: the replicas Terraform holds, and which of them
failed to create (Terraform marks those `tainted`). Reading the JSON directly costs
microseconds where `terraform state list` costs a process per stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TfStateError(RuntimeError):
    """A state file we cannot read; the message names it."""


@dataclass(frozen=True)
class ManagedReplica:
    id: str
    zone: str
    market: str
    tainted: bool
    stack: str


def state_resources(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TfStateError(f"{path}: unreadable Terraform state ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("version") != 4:
        raise TfStateError(f"{path}: not a Terraform state of format version 4")
    resources = raw.get("resources", [])
    return resources if isinstance(resources, list) else []


def managed_replicas(stack_dir: Path) -> list[ManagedReplica]:
    out: list[ManagedReplica] = []
    for res in state_resources(stack_dir / "terraform.tfstate"):
        if res.get("type") != "null_resource" or res.get("name") != "replica":
            continue
        for inst in res.get("instances", []):
            triggers = inst.get("attributes", {}).get("triggers") or {}
            out.append(
                ManagedReplica(
                    id=str(inst.get("index_key") or triggers.get("replica_id")),
                    zone=str(triggers.get("zone", "")),
                    market=str(triggers.get("market", "")),
                    tainted=inst.get("status") == "tainted",
                    stack=stack_dir.name,
                )
            )
    return out


def has_resource(stack_dir: Path, name: str) -> bool:
    return any(r.get("name") == name for r in state_resources(stack_dir / "terraform.tfstate"))
