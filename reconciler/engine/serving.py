"""Is the service serving? Requests through the load balancer, else its own health view.

`apply` reports success only when requests through the load balancer's endpoint to the
readiness probe's path (method, headers and body as the spec gives them) succeed, and the
loop's `hedgeform_endpoint_serving` metric is the same check. Where this host cannot reach the
endpoint at all (a private load balancer, an emulator's placeholder DNS name: the name does not
resolve or nothing accepts the connection), the check says so once and falls back to the load
balancer's own view of its targets (`Observed.lb_members` of the backend: HAProxy's backend
status, an AWS target group's healthy targets), naming which check decided.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import requests

from reconciler.readiness import (
    ProbeRequest,
    pinned_session,
    presented_certificate_problem,
    probe,
    spec_probe_request,
)
from reconciler.spec.model import ServiceSpec
from reconciler.spec.tls import leaf_certificate

ENDPOINT = "endpoint"
LB_HEALTH = "load balancer health"
CONNECT_TIMEOUT_S = 3.0  # enough for a DNS lookup and a TCP handshake to a reachable LB


@dataclass(frozen=True)
class ServingCheck:
    """`serving`: the endpoint answered the probe request with 200 on every attempt (or, when
    unreachable, the load balancer has at least one healthy target); `via`: ENDPOINT or
    LB_HEALTH; `detail`: one line for people (no header value, no body)."""

    serving: bool
    via: str
    detail: str


class ServingView(Protocol):
    """What the check needs of a service (engine/reconcile.py `Reconciler` gives both)."""

    def endpoint(self) -> str:
        """The service's URL(s), comma-separated."""
        ...

    def lb_members(self) -> set[str] | None:
        """The replicas the load balancer serves from now; None when unknown."""
        ...


class ServingChecker:
    """Checks one service; remembers that it already said the endpoint is unreachable."""

    def __init__(
        self,
        cloud: ServingView,
        spec: ServiceSpec,
        *,
        attempts: int = 3,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.cloud = cloud
        self.spec = spec
        self.attempts = attempts
        self.request: ProbeRequest = spec_probe_request(
            spec, os.environ if environ is None else environ
        )
        self.notes: list[str] = []  # said once each: the caller prints and clears them
        self._said: set[str] = set()

    def check(self) -> ServingCheck:
        urls = [u.strip() for u in self.cloud.endpoint().split(",") if "://" in u]
        if not urls:
            return self._lb_view(f"no endpoint yet ({self.cloud.endpoint()})")
        url = urls[0]
        unreachable = _unreachable(url)
        if unreachable:
            return self._lb_view(f"{url} is not reachable from this host ({unreachable})")
        path = "".join(
            ch if ch.isprintable() and not ch.isspace() else "?" for ch in self.request.path
        )
        what = f"{self.request.method} {path}"  # one line, whatever a variable held
        tls = self.spec.service.tls
        session: requests.Session | None = None
        if tls is not None and url.startswith("https://"):
            # The certificate service.tls names, pinned (readiness.py): never verify=False.
            try:
                problem = presented_certificate_problem(
                    url, tls.certfile, leaf_certificate(tls), CONNECT_TIMEOUT_S
                )
            except (OSError, ValueError) as exc:
                problem = f"service.tls.certfile cannot be read ({type(exc).__name__})"
            if problem is not None:
                return ServingCheck(False, ENDPOINT, f"{url}: {problem}")
            session = pinned_session(tls.certfile)
        try:
            for _ in range(self.attempts):  # round robin: several requests meet several targets
                result = probe(url, self.request, session)
                if not result.ok:
                    return ServingCheck(False, ENDPOINT, f"{what} through {url}: {result.reason}")
        finally:
            if session is not None:
                session.close()
        verified = " (TLS: service.tls's certificate)" if session is not None else ""
        return ServingCheck(
            True, ENDPOINT, f"{what} through {url}: HTTP 200 x{self.attempts}{verified}"
        )

    def _lb_view(self, why: str) -> ServingCheck:
        if why not in self._said:
            self._said.add(why)
            self.notes.append(f"{why}; using the load balancer's own health view instead")
        members = self.cloud.lb_members()
        if members is None:
            return ServingCheck(False, LB_HEALTH, "the load balancer's health is unknown")
        return ServingCheck(
            bool(members), LB_HEALTH, f"{len(members)} healthy target(s) in the load balancer"
        )


def _unreachable(url: str) -> str:
    """Why nothing at `url` accepts a TCP connection ("" when something does)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return ""
    except socket.gaierror:
        return f"the name {host} does not resolve"
    except TimeoutError:
        return f"no answer from {host}:{port} within {CONNECT_TIMEOUT_S:g} s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
