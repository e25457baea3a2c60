"""One readiness prober for every backend that probes replicas itself, with SkyServe's semantics.

Two steps, so the decision about *what* to send stays pure and testable:

- `probe_request(probe, envs, environ) -> ProbeRequest` (pure): the HTTP request the spec's
  `service.readiness_probe` asks for, with `$VAR` / `${VAR}` substituted.
- `probe(base_url, request, session) -> ProbeResult` (I/O): send it once and say what happened.

The rules, and where each comes from (SkyPilot master: `sky/serve/replica_managers.py`
`ReplicaInfo.probe`, `sky/serve/service_spec.py`, `sky/task.py` `_fill_in_env_vars`):

- POST with `post_data` as the JSON body (`requests.post(url, json=post_data, ...)`) when
  `post_data` is set, else GET; the spec's `headers` are sent either way.
- A string `post_data` is JSON text: SkyServe `json.loads` it when the spec is loaded and sends
  the parsed value. The loader refuses a string that is not JSON, so here it always parses.
- Ready means HTTP 200 exactly (not any 2xx).
- `timeout_seconds` is passed to requests unchanged, as SkyServe does: it bounds the TCP
  connect and each wait for response bytes (requests' semantics), with no cap of our own.
- `$NAME` and `${NAME}` (NAME = a shell variable name) in the path, in header values and in the
  body's strings (mapping keys and values, list items, nested) are replaced by the variable's
  value: from the spec's `envs` first, then the process environment. SkyServe substitutes the
  whole `service` section from the task's `envs` and `secrets` (with `--env NAME` reading the
  caller's environment), which is the same two sources. One pass: a value that itself contains
  `$X` is not expanded again.
- A variable with no value is left exactly as written (`$NAME` / `${NAME}` stays in the text),
  as both SkyServe (`task_envs.get(name, match.group(0))`) and `os.path.expandvars` do; so is
  anything that is not one of the two forms (`$1`, `${unclosed`, `$$`).

Secrets: header values and the body may hold tokens (`Authorization: Bearer ${HF_TOKEN}`). They
are never logged, never put in a `reason` or an exception message, and `repr(ProbeRequest)`
shows header names only (SkyServe logs header names only, too; unlike SkyServe we never log the
response body either).
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from reconciler.spec.model import ReadinessProbe, ServiceSpec
from reconciler.spec.service import expand_vars

Method = Literal["GET", "POST"]
_REDACTED = "<redacted>"


@dataclass(frozen=True)
class ProbeRequest:
    """One readiness probe, ready to send to any replica.

    `method` "GET" or "POST"; `path` starts with "/" and is appended to the replica's base URL;
    `headers` name -> value (read-only); `body` the JSON value sent as a POST body (a mapping,
    list, string, number, bool or None), None for GET; `timeout_s` seconds, > 0.
    `repr()` shows header names and the body's type only: both may carry secrets.
    """

    method: Method
    path: str
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    body: object = None
    timeout_s: float = 15.0

    def __repr__(self) -> str:
        names = ", ".join(f"{name!r}: {_REDACTED!r}" for name in self.headers)
        body = "None" if self.body is None else f"<{type(self.body).__name__}, redacted>"
        return (
            f"ProbeRequest(method={self.method!r}, path={self.path!r}, headers={{{names}}}, "
            f"body={body}, timeout_s={self.timeout_s!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw.

    `ok`: HTTP 200 exactly. `status`: the HTTP status code, None when no response came.
    `reachable`: False when no HTTP response came back (connection refused, timed out, name
    not resolved, connection reset). `reason`: a short phrase for logs and status lines
    ("HTTP 200", "HTTP 503", "timed out after 15 s", "connection refused"); it never holds
    header values, the body or the URL. `elapsed_s`: wall seconds the probe took.
    """

    ok: bool
    status: int | None
    reachable: bool
    reason: str
    elapsed_s: float


def substitute(text: str, envs: Mapping[str, str], environ: Mapping[str, str]) -> str:
    """`text` with each `$NAME` / `${NAME}` replaced from `envs`, else `environ`; a name in
    neither is left as written. One pass (see the module docstring)."""

    return expand_vars(text, ChainMap(dict(envs), dict(environ)))


def _substitute_json(value: object, envs: Mapping[str, str], environ: Mapping[str, str]) -> object:
    if isinstance(value, str):
        return substitute(value, envs, environ)
    if isinstance(value, Mapping):
        return {
            substitute(str(k), envs, environ): _substitute_json(v, envs, environ)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_substitute_json(item, envs, environ) for item in value]
    return value  # numbers, booleans, null


def probe_request(
    probe: ReadinessProbe, envs: Mapping[str, str], environ: Mapping[str, str]
) -> ProbeRequest:
    """The request `probe` describes, with variables substituted (`envs` first, then
    `environ`). Pure: reads nothing but its arguments.

    Raises ValueError (naming the field, never its content) only for a string `post_data`
    that is not JSON, which the spec loader already refuses.
    """
    raw: object = probe.post_data
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError("readiness_probe.post_data: a string must be JSON") from None
    # SkyServe decides on the parsed value: `post_data: "null"` probes with GET.
    method: Method = "GET" if raw is None else "POST"
    body = None if raw is None else _substitute_json(raw, envs, environ)
    headers = {name: substitute(value, envs, environ) for name, value in probe.headers.items()}
    return ProbeRequest(
        method=method,
        path=substitute(probe.path, envs, environ),
        headers=MappingProxyType(headers),
        body=body,
        timeout_s=float(probe.timeout_seconds),
    )


def spec_probe_request(spec: ServiceSpec, environ: Mapping[str, str]) -> ProbeRequest:
    """`probe_request` for a whole spec: its `envs` (and inline `secrets`) first, then
    `environ`. Names declared `null` (value "from the environment") are looked up in
    `environ` only, so their empty placeholder in `spec.envs` is never sent."""
    envs = {k: v for k, v in spec.envs.items() if k not in spec.envs_from_environment}
    return probe_request(spec.service.readiness_probe, envs, environ)


def probe(
    base_url: str, request: ProbeRequest, session: requests.Session | None = None
) -> ProbeResult:
    """Send `request` to `base_url` (e.g. "http://10.0.0.5:8081") once; never raises for a
    network or HTTP failure (that is the result). `session` reuses connections; a one-off
    session is used when None."""
    url = base_url.rstrip("/") + request.path
    timeout = (request.timeout_s, request.timeout_s)  # connect, read: both exactly the spec's
    client = session if session is not None else requests.Session()
    start = time.monotonic()
    try:
        response = client.request(
            request.method,
            url,
            headers=dict(request.headers),
            json=request.body if request.method == "POST" else None,
            timeout=timeout,
        )
        response.close()
    except requests.Timeout:
        return _failed(f"timed out after {request.timeout_s:g} s", start)
    except requests.ConnectionError as exc:
        return _failed(_connection_reason(exc), start)
    except requests.RequestException as exc:  # invalid URL or header value, too many redirects
        return _failed(f"request failed ({type(exc).__name__})", start)
    except (UnicodeError, ValueError) as exc:  # a substituted header or path HTTP cannot carry
        return _failed(f"request could not be sent ({type(exc).__name__})", start)
    finally:
        if session is None:
            client.close()
    status = response.status_code
    return ProbeResult(status == 200, status, True, f"HTTP {status}", time.monotonic() - start)


def _failed(reason: str, start: float) -> ProbeResult:
    return ProbeResult(False, None, False, reason, time.monotonic() - start)


def _connection_reason(exc: BaseException) -> str:
    """A short, content-free phrase for a failed connection, from the exception chain."""
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return "name not resolved"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
    return "connection failed"


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it wraps: __cause__, __context__, urllib3's `.reason`, args."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 32:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return seen


# -- HTTPS to an endpoint serving service.tls ---------------------------------------------------
#
# The sandbox's endpoint is https://127.0.0.1:PORT while its certificate names the service's
# public name (or is self-signed for a test), so neither the system's CAs nor a host name check
# can judge it. What is checked instead: the chain is verified against the certfile's own
# certificates as the only trust anchors (a self-signed certificate, or a leaf with its
# intermediates: partial chains accepted), and the certificate presented must be exactly the
# certfile's first one (`presented_certificate_problem`). That is stricter than a name check:
# any other certificate, even one a public CA signed for the same name, fails. Never
# `verify=False`.


def pinned_context(certfile: str) -> ssl.SSLContext:
    """A TLS client context whose only trust anchors are the certificates in `certfile`."""
    context = ssl.create_default_context(cafile=certfile)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False  # the certificate itself is compared instead (above)
    return context


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, certfile: str) -> None:
        self._certfile = certfile
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["ssl_context"] = pinned_context(self._certfile)
        pool_kwargs["assert_hostname"] = False
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def pinned_session(certfile: str) -> requests.Session:
    """A session for an endpoint serving `certfile` (service.tls): HTTPS verified against it
    (see above), never against the system's CAs."""
    session = requests.Session()
    session.verify = certfile
    session.mount("https://", _PinnedAdapter(certfile))
    return session


def presented_certificate_problem(
    url: str, certfile: str, leaf_pem: str, timeout_s: float = 5.0
) -> str | None:
    """Why the HTTPS endpoint at `url` does not present the certificate `leaf_pem` (the
    certfile's first), verified against `certfile`; None when it does. One short phrase."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            pinned_context(certfile).wrap_socket(raw, server_hostname=host) as tls,
        ):
            presented = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError as exc:
        return (
            f"its certificate does not verify against service.tls.certfile ({exc.verify_message})"
        )
    except ssl.SSLError as exc:
        return f"no TLS handshake ({exc.reason or type(exc).__name__})"
    except OSError as exc:
        return f"no TLS connection ({exc.strerror or type(exc).__name__})"
    if presented != ssl.PEM_cert_to_DER_cert(leaf_pem):
        return "it presents another certificate than service.tls.certfile's first"
    return None
