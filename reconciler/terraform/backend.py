"""Where a service's Terraform state lives: the `state_backend` setting, as one URL.

    local                                              state/<service>/<stack>/terraform.tfstate
    s3://BUCKET[/PREFIX]?dynamodb_table=TABLE&region=R  S3 object, DynamoDB lock table
    gcs://BUCKET[/PREFIX]                              GCS object (GCS locks by itself)
    azurerm://ACCOUNT/CONTAINER[/PREFIX]               blob (locked with a blob lease)

Each stack's state sits under the prefix at `<service>/<stack>`, so one bucket serves every
service and stack. The backend block goes into each stack's generated root configuration
(`terraform { backend "<kind>" { ... } }`); credentials never do: the backends read them
from the environment, as the providers do. With an AWS emulator (`aws_endpoint_url`), the
S3 backend and its lock table point at it.

Every name is checked against its service's own naming rules before it reaches a file or a
command line, and refused in one line that says which part is wrong; the URL itself is only
echoed back in pieces that passed those checks (it may carry nothing secret, and a query key
other than the two named is refused rather than passed on).

Sources: Terraform 1.0 backend docs (s3: bucket/key/region/dynamodb_table/encrypt and the
`endpoint`/`dynamodb_endpoint`/`sts_endpoint`/`iam_endpoint`/`force_path_style` overrides;
gcs: bucket/prefix; azurerm: storage_account_name/container_name/key); S3 bucket naming
rules (3-63 characters of a-z, 0-9, `.` and `-`, starting and ending with a letter or digit;
no `..`, not an IPv4 address, not starting with `xn--` or `sthree-`, not ending with
`-s3alias` or `--ol-s3`);
DynamoDB table names (3-255 of A-Z, a-z, 0-9, `_`, `-`, `.`); GCS bucket names (3-63 of
a-z, 0-9, `_`, `-`, `.`); Azure storage account names (3-24 of a-z and 0-9) and container
names (3-63 of a-z, 0-9 and single `-`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from reconciler.errors import SettingsError

ENV_STATE_BACKEND = "HEDGEFORM_STATE_BACKEND"
KINDS = ("local", "s3", "gcs", "azurerm")
STATE_OBJECT = "terraform.tfstate"

_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
_DYNAMODB_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_AZURE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_AZURE_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_AWS_REGION = re.compile(r"[a-z]{2}(?:-gov)?-[a-z]+-\d")
_PREFIX_PART = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


@dataclass(frozen=True)
class StateBackend:
    """A parsed `state_backend`. `container` is the S3/GCS bucket or the Azure container,
    `account` the Azure storage account, `prefix` the key prefix (no leading or trailing
    `/`), `lock_table` the S3 backend's DynamoDB table, `endpoint_url` an AWS emulator."""

    kind: str = "local"
    container: str = ""
    prefix: str = ""
    account: str = ""
    region: str = ""
    lock_table: str = ""
    endpoint_url: str | None = None

    @property
    def remote(self) -> bool:
        return self.kind != "local"

    def describe(self) -> str:
        """The backend in the URL form it was given (every part already validated)."""
        if self.kind == "local":
            return "local"
        path = "/".join(p for p in (self.container, self.prefix) if p)
        if self.kind == "s3":
            return f"s3://{path}?dynamodb_table={self.lock_table}&region={self.region}"
        if self.kind == "gcs":
            return f"gcs://{path}"
        return f"azurerm://{self.account}/{path}"

    def state_key(self, service: str, stack: str) -> str:
        """The object holding one stack's state: `[PREFIX/]<service>/<stack>/terraform.tfstate`."""
        return "/".join(p for p in (self.prefix, service, stack, STATE_OBJECT) if p)

    def block(self, service: str, stack: str) -> dict[str, dict[str, Any]] | None:
        """The root configuration's `terraform.backend` value for one stack, or None (local:
        Terraform's default, the state file in the stack directory)."""
        key = self.state_key(service, stack)
        if self.kind == "s3":
            config: dict[str, Any] = {
                "bucket": self.container,
                "key": key,
                "region": self.region,
                "dynamodb_table": self.lock_table,
                "encrypt": True,
            }
            if self.endpoint_url:
                config.update(
                    endpoint=self.endpoint_url,
                    dynamodb_endpoint=self.endpoint_url,
                    sts_endpoint=self.endpoint_url,
                    iam_endpoint=self.endpoint_url,
                    force_path_style=True,
                    skip_credentials_validation=True,
                    skip_metadata_api_check=True,
                    skip_region_validation=True,
                )
            return {"s3": config}
        if self.kind == "gcs":
            return {"gcs": {"bucket": self.container, "prefix": key.rsplit("/", 1)[0]}}
        if self.kind == "azurerm":
            return {
                "azurerm": {
                    "storage_account_name": self.account,
                    "container_name": self.container,
                    "key": key,
                }
            }
        return None


LOCAL = StateBackend()


def parse_state_backend(value: str, where: str, *, endpoint_url: str | None = None) -> StateBackend:
    """The backend `value` names (see the module docstring); SettingsError, one line starting
    with `where`, for anything else. `endpoint_url` (an already validated AWS emulator URL)
    is kept for the S3 backend only."""
    text = value.strip()
    if text in ("", "local"):
        return LOCAL
    if any(c.isspace() or not c.isprintable() for c in text):
        raise SettingsError(f"{where}: a state backend URL has no spaces or control characters")
    scheme, sep, _ = text.partition("://")
    if not sep or scheme not in KINDS:
        raise SettingsError(
            f"{where}: not a state backend; expected local, s3://BUCKET/PREFIX?dynamodb_table="
            "TABLE&region=REGION, gcs://BUCKET/PREFIX or azurerm://ACCOUNT/CONTAINER/PREFIX"
        )
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None or parts.port is not None:
        raise SettingsError(f"{where}: a state backend URL carries no credentials or port")
    if parts.fragment:
        raise SettingsError(f"{where}: a state backend URL has no #fragment")
    host = parts.netloc
    segments = [s for s in parts.path.split("/")]
    if segments and segments[0] == "":
        segments = segments[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]
    query = _query(parts.query, where)
    if scheme == "s3":
        _name(host, _S3_BUCKET, where, "S3 bucket", "3-63 of a-z, 0-9, '.', '-'")
        if (
            ".." in host
            or _IPV4.fullmatch(host)
            or host.startswith(("xn--", "sthree-"))
            or host.endswith(("-s3alias", "--ol-s3"))
        ):
            raise SettingsError(
                f"{where}: not a valid S3 bucket name {host!r} (no '..', not an IP address, "
                "not xn--/sthree- at the start or -s3alias/--ol-s3 at the end)"
            )
        table = query.pop("dynamodb_table", "")
        region = query.pop("region", "")
        _no_more(query, scheme, where)
        if not table:
            raise SettingsError(
                f"{where}: an s3 state backend needs ?dynamodb_table=TABLE (a DynamoDB table "
                "with partition key LockID, a string): without a lock two applies can overlap"
            )
        _name(table, _DYNAMODB_TABLE, where, "DynamoDB table", "3-255 of A-Z, a-z, 0-9, _-.")
        if not region:
            raise SettingsError(f"{where}: an s3 state backend needs &region=REGION")
        _name(region, _AWS_REGION, where, "AWS region", "like us-east-1")
        return StateBackend("s3", host, _prefix(segments, where), "", region, table, endpoint_url)
    _no_more(query, scheme, where)
    if scheme == "gcs":
        _name(host, _GCS_BUCKET, where, "GCS bucket", "3-63 of a-z, 0-9, '.', '_', '-'")
        return StateBackend("gcs", host, _prefix(segments, where))
    _name(host, _AZURE_ACCOUNT, where, "Azure storage account", "3-24 of a-z and 0-9")
    if not segments:
        raise SettingsError(f"{where}: an azurerm state backend needs ACCOUNT/CONTAINER")
    container, rest = segments[0], segments[1:]
    _name(container, _AZURE_CONTAINER, where, "Azure container", "3-63 of a-z, 0-9, single '-'")
    return StateBackend("azurerm", container, _prefix(rest, where), account=host)


def _query(query: str, where: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise SettingsError(f"{where}: the state backend's ?query is not KEY=VALUE&...") from None
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise SettingsError(f"{where}: the state backend's ?{key} is given twice")
        out[key] = value
    return out


def _no_more(query: dict[str, str], scheme: str, where: str) -> None:
    if query:
        known = "dynamodb_table and region" if scheme == "s3" else "none"
        names = ", ".join(sorted(k for k in query if _PREFIX_PART.fullmatch(k)) or ["?"])
        raise SettingsError(
            f"{where}: unknown {scheme} state backend option(s) {names} (known: {known})"
        )


def _name(value: str, pattern: re.Pattern[str], where: str, what: str, rule: str) -> None:
    if not pattern.fullmatch(value):
        shown = f" {value!r}" if value and value.isascii() else ""
        if len(value) > 64:
            shown = ""
        raise SettingsError(f"{where}: not a valid {what} name{shown} ({rule})")


def _prefix(segments: list[str], where: str) -> str:
    for part in segments:
        if not _PREFIX_PART.fullmatch(part) or part in (".", ".."):
            raise SettingsError(
                f"{where}: the state backend's prefix has a bad part; each part between '/' "
                "is 1-128 of A-Z, a-z, 0-9, '_', '.', '-' (not '.' or '..')"
            )
    return "/".join(segments)
