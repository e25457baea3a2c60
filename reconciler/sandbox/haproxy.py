"""The sandbox load balancer: a real HAProxy whose backend `replicas` is the target group.

Membership changes go through HAProxy's runtime API on its admin socket (sub-millisecond, no
reload): servers are added with `add server` and removed by drain -> maint -> shutdown sessions
-> `del server`. Runtime-added servers are lost when HAProxy restarts, so the desired membership
is also kept in `<state_dir>/haproxy/lb.json` and re-applied by `ensure_running()`.

Files: `<state_dir>/haproxy.sock` (admin socket), `<state_dir>/haproxy/{haproxy.cfg,haproxy.pid,
lb.json}`. Its log (requests, servers going up and down) is a ring buffer in its memory, read
over the admin socket (`log_lines`).

With `service.tls` the frontend serves HTTPS (`bind ... ssl crt`): HAProxy loads the
certificate and the private key from one PEM, `<state_dir>/haproxy/tls/endpoint.pem`, which
only this module writes (0600 in a 0700 directory, atomically: temp file, fsync, rename) and
`down` deletes. A renewed pair is swapped in over the admin socket (`set ssl cert` + `commit
ssl cert`: no restart, no dropped connection). The key's content goes nowhere else: not into
haproxy.cfg, lb.json, argv, the environment or a message.
"""

from __future__ import annotations

import csv
import ipaddress
import re
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reconciler.errors import SandboxError
from reconciler.files import find_executable, write_atomic, write_json_atomic
from reconciler.sandbox import processes, replicas
from reconciler.sandbox.statefiles import check_name, file_lock, read_json
from reconciler.spec.model import TLSFiles
from reconciler.spec.tls import combined_pem, tls_problem

BACKEND = "replicas"
FRONTEND = "sandbox"
INSTALL_HINT = (
    "HAProxy is not installed: run `apt-get install -y haproxy` (Debian/Ubuntu), "
    "`dnf install -y haproxy` (Fedora/RHEL) or `brew install haproxy` (macOS), "
    "or put it on PATH"
)
# Linux limits a unix socket path (sun_path) to 107 bytes, and HAProxy keeps room in it for
# the temporary name it binds before renaming: HAProxy 2.6 refuses a `stats socket` path over
# 97 bytes ("socket path '...' too long (max 97)", checked with `haproxy -c`).
MAX_SOCKET_PATH = 97
CHECK_INTER_S = 0.5
CHECK_ARGS = f"check inter {int(CHECK_INTER_S * 1000)} fall 2 rise 1"
# Bounds of a membership change (see HAProxyLB._apply): the wait for added servers to pass
# their first check, and for requests in flight on a leaving server to finish. AWS's target
# groups wait 300 s by default (deregistration_delay); a sandbox request takes milliseconds,
# and a reconcile pass must not stall on one slow request.
JOIN_WAIT_MAX_S = 10.0
DRAIN_WAIT_S = 10.0
MAX_WEIGHT = 256  # HAProxy's largest server weight
# HAProxy's log: a ring buffer in its memory (the newest LOG_RING_BYTES of it), read over the
# admin socket. A file would need a syslog daemon the sandbox does not run.
LOG_RING = "requests"
LOG_RING_BYTES = 262_144
# A path HAProxy's config can hold as one unquoted word: no space, quote, '#' (a comment),
# '$' (variable expansion) or backslash.
CHECK_PATH = re.compile(r"/[A-Za-z0-9._~/?=&%:@!()*+,;-]*")


@dataclass(frozen=True)
class HealthCheck:
    """HAProxy's own check of each server: `GET path` expecting 200 within `timeout_s`, or,
    with `path` None, a TCP connect (for probes HAProxy must not hold in its config: a POST
    body or headers, which may carry secrets; the reconciler's probe still gates membership).
    """

    path: str | None = "/health"
    timeout_s: int = 2

    def __post_init__(self) -> None:
        if self.path is not None and not CHECK_PATH.fullmatch(self.path):
            raise SandboxError(f"health check path {self.path!r} cannot go into HAProxy's config")
        if not 1 <= self.timeout_s <= 3600:
            raise SandboxError(f"health check timeout must be 1-3600 s, got {self.timeout_s}")

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "timeout_s": self.timeout_s}

    @classmethod
    def from_json(cls, raw: Any) -> HealthCheck:
        if not isinstance(raw, dict):
            return cls()
        path = raw.get("path")
        try:
            return cls(None if path is None else str(path), int(raw.get("timeout_s", 2)))
        except (TypeError, ValueError) as exc:
            raise SandboxError(
                f"the load balancer's record holds a bad health check ({exc}); "
                "run `hedgeform sandbox lb down` and apply again"
            ) from None


Members = Mapping[str, tuple[str, int]]


def haproxy_binary() -> str:
    path = find_executable("haproxy")
    if path is None:
        raise SandboxError(INSTALL_HINT)
    return str(path)


def render_config(
    port: int, socket_path: Path, check: HealthCheck | None = None, pem: Path | None = None
) -> str:
    """haproxy.cfg: one loopback frontend, one backend filled at run time, servers checked as
    `check` says (the service's readiness probe where HAProxy can carry it); with `pem` (the
    certificate and key file, `HAProxyLB.pem_path`) the frontend serves HTTPS only.

    A request whose connection fails or gets an empty response (a replica killed between two
    health checks) is retried once on another server, so a preempted replica that was not
    deregistered in time costs latency more often than a failed request.
    """
    check = check or HealthCheck()
    http_check = (
        f"    option httpchk GET {check.path}\n    http-check expect status 200\n"
        if check.path is not None
        else "    # TCP connect check: the probe is not a GET HAProxy can hold\n"
    )
    tls = f" ssl crt {pem}" if pem is not None else ""
    return f"""# Written by hedgeform sandbox; servers are added at run time over the admin socket.
global
    maxconn 4096
    stats socket {socket_path} mode 600 level admin
    stats timeout 30s
    log ring@{LOG_RING} local0

# The request and health-check log, in memory (HAProxy runs as a daemon without syslog):
# `show events {LOG_RING}` on the admin socket, `hedgeform logs SERVICE --lb`.
ring {LOG_RING}
    format rfc3164
    maxlen 1200
    size {LOG_RING_BYTES}

defaults
    mode http
    log global
    option httplog
    # A connection that sends nothing (the serving check's TCP reachability probe on each
    # apply, a port scan) is not a request: without this it is logged as a 400 "<BADREQ>".
    option dontlognull
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout queue 10s
    timeout http-request 10s
    timeout check {check.timeout_s}s
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response

frontend {FRONTEND}
    bind 127.0.0.1:{port}{tls}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
{http_check}"""


_BIND = re.compile(r"^\s*bind 127\.0\.0\.1:(\d+)( ssl crt \S+)?\s*$", re.M)
_HTTP_CHECK = re.compile(r"^\s*option httpchk GET (\S+)\s*$", re.M)
_CHECK_TIMEOUT = re.compile(r"^\s*timeout check (\d+)s\s*$", re.M)


def config_record(cfg_path: Path) -> dict[str, Any]:
    """`{"port", "check", "tls"}` read back from a configuration render_config wrote; `{}`
    when there is none or it is not ours. The members are not in it (added at run time)."""
    try:
        text = cfg_path.read_text()
    except OSError:
        return {}
    port, timeout = _BIND.search(text), _CHECK_TIMEOUT.search(text)
    if port is None or timeout is None:
        return {}
    path = _HTTP_CHECK.search(text)
    check = {"path": path.group(1) if path else None, "timeout_s": int(timeout.group(1))}
    return {"port": int(port.group(1)), "check": check, "tls": port.group(2) is not None}


@dataclass(frozen=True)
class ServerStats:
    name: str
    status: str
    req_tot: int
    req_rate: int
    hrsp_2xx: int
    hrsp_5xx: int
    sessions_total: int
    sessions_current: int = 0
    hrsp_1xx: int = 0
    hrsp_3xx: int = 0
    hrsp_4xx: int = 0
    hrsp_other: int = 0
    econ: int = 0  # requests whose connection to the server failed
    eresp: int = 0  # responses aborted or refused by the server (incl. a closed connection)
    # Average times in ms over the server's last 1024 requests (HAProxy's `rtime`: to the
    # first response byte, `ttime`: the whole session); 0 before the first request.
    rtime_ms: int = 0
    ttime_ms: int = 0

    @property
    def up(self) -> bool:
        """Passing its checks and taking traffic (`UP`, or `UP 1/2` while a check fails)."""
        return self.status.startswith("UP")


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def weight_for(state_dir: Path, name: str) -> int:
    """A member's HAProxy weight: its replica's simulated throughput (`max_rps`, requests/s,
    rounded, 1-256: HAProxy's weight range), so `balance roundrobin` sends each GPU type
    traffic in proportion to what it serves, as SkyServe's `instance_aware_least_load` weighs
    replicas by their type's target. 1 for a member without one (every member alike)."""
    try:
        record = replicas.get(state_dir, name)
    except SandboxError:
        record = None
    if record is None or record.max_rps <= 0:
        return 1
    return max(1, min(MAX_WEIGHT, round(record.max_rps)))


def _check_member(name: str, host: str, port: int) -> None:
    check_name(name, "server name")
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise SandboxError(f"server {name}: host must be an IP address, got {host!r}") from exc
    if not 0 < int(port) < 65536:
        raise SandboxError(f"server {name}: invalid port {port}")


def _reply_line(reply: str) -> str:
    """HAProxy's reply to a certificate command, as one line that cannot hold PEM text."""
    lines = [ln.strip() for ln in reply.splitlines() if ln.strip() and "-----" not in ln]
    return (lines[0] if lines else "no reply")[:200]


class HAProxyLB:
    """One HAProxy instance per sandbox state dir.

    `tls`: None serves as recorded (a restart after a crash reuses the certificate file it
    has); False serves plain HTTP; TLSFiles serves HTTPS with that key and certificate, and
    with `tls_cert_sha256` (the digest the plan was made with) only if the certificate file
    still has it, so a pair renewed after a plan was reviewed is not applied under it."""

    def __init__(
        self,
        state_dir: Path,
        port: int | None = None,
        check: HealthCheck | None = None,
        tls: TLSFiles | Literal[False] | None = None,
        tls_cert_sha256: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.dir = self.state_dir / "haproxy"
        self.cfg_path = self.dir / "haproxy.cfg"
        self.pid_path = self.dir / "haproxy.pid"
        self.lb_path = self.dir / "lb.json"
        self.socket_path = self.state_dir / "haproxy.sock"
        self.pem_path = self.dir / "tls" / "endpoint.pem"
        recorded = self._read_lb()
        self.port = int(port if port is not None else recorded.get("port", 0))
        self.check = check if check is not None else HealthCheck.from_json(recorded.get("check"))
        self.tls_files = tls or None
        self.tls_cert_sha256 = tls_cert_sha256
        self.tls = bool(recorded.get("tls")) if tls is None else tls is not False

    # -- recorded state -----------------------------------------------------------------------

    def _read_lb(self) -> dict[str, Any]:
        """The record (`lb.json`); without one, the port and check of the configuration
        HAProxy was started with (`haproxy.cfg`, written by render_config), so a lost record
        is rebuilt from what runs instead of being taken for another load balancer."""
        raw = read_json(self.lb_path)
        if isinstance(raw, dict):
            return raw
        return config_record(self.cfg_path)

    def desired_members(self) -> dict[str, tuple[str, int]]:
        raw = self._read_lb().get("members", {})
        return {str(k): (str(v[0]), int(v[1])) for k, v in dict(raw).items()}

    def _write_lb(self, members: Members) -> None:
        data = {
            "port": self.port,
            "check": self.check.to_json(),
            "tls": self.tls,
            "members": {k: [h, p] for k, (h, p) in members.items()},
        }
        write_json_atomic(self.lb_path, data)

    # -- process ------------------------------------------------------------------------------

    def _markers(self) -> list[str]:
        return [str(self.cfg_path)]

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if processes.is_alive(pid, self._markers()) else None

    def is_running(self) -> bool:
        """The process lives and its admin socket answers."""
        if self.pid() is None:
            return False
        try:
            self.command("show info")
        except SandboxError:
            return False
        return True

    def up(self) -> bool:
        """Start HAProxy (idempotent) and restore the recorded membership. Returns True when
        it was started now."""
        with file_lock(self.state_dir / ".haproxy.lock"):
            return self._up_locked()

    def _up_locked(self) -> bool:
        if self.is_running():
            lb = self._read_lb()
            recorded = int(lb.get("port", self.port))
            if recorded != self.port:
                raise SandboxError(
                    f"load balancer already runs on port {recorded}; run `lb down` first"
                )
            if HealthCheck.from_json(lb.get("check")) != self.check:
                raise SandboxError(
                    "load balancer already runs with another health check; run `lb down` first"
                )
            if bool(lb.get("tls")) != self.tls:
                serves = "HTTPS" if lb.get("tls") else "plain HTTP"
                raise SandboxError(f"load balancer already serves {serves}; run `lb down` first")
            if self.tls_files is not None:
                self._renew_certificate(self.tls_files)
            return False
        binary = haproxy_binary()
        if not 0 < self.port < 65536:
            raise SandboxError(f"invalid load balancer port {self.port}")
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise SandboxError(
                f"state dir path too long for HAProxy's admin socket ({self.socket_path}, "
                f"{len(str(self.socket_path))} bytes; HAProxy takes at most {MAX_SOCKET_PATH}): "
                "move the project to a shorter path"
            )
        # A HAProxy that just crashed may still be releasing the port: give it a moment.
        if not processes.wait_port_free(self.port, timeout=2.0):
            raise SandboxError(
                f"port {self.port} on 127.0.0.1 is already in use: choose another port for "
                "the load balancer or stop what listens there"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.tls_files is not None:
            self._write_pem(self._pem_of(self.tls_files))
        elif self.tls and not self.pem_path.is_file():
            raise SandboxError(
                f"the load balancer serves HTTPS but its certificate file {self.pem_path} is "
                "gone: apply again (the front stack passes service.tls's files)"
            )
        pem = self.pem_path if self.tls else None
        self.cfg_path.write_text(render_config(self.port, self.socket_path, self.check, pem))
        self.pid_path.unlink(missing_ok=True)
        members = self.desired_members()
        self._write_lb(members)
        proc = subprocess.run(
            [binary, "-D", "-p", str(self.pid_path), "-f", str(self.cfg_path)],
            capture_output=True,
            text=True,
            timeout=15,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            check=False,
            # The daemon it forks keeps this environment: the marker lets `destroy` find it
            # when haproxy.pid is lost (processes.owned_by).
            env=processes.owned_env(self.state_dir),
        )
        if proc.returncode != 0:
            raise SandboxError(self._start_error(proc.stderr))
        deadline = time.monotonic() + 10
        while not self.is_running():
            if time.monotonic() > deadline:
                raise SandboxError(f"HAProxy did not come up on port {self.port} within 10 s")
            time.sleep(0.02)
        if members:
            self._apply(members)
        return True

    def _start_error(self, stderr: str) -> str:
        if "cannot bind socket" in stderr or "Address already in use" in stderr:
            return f"port {self.port} on 127.0.0.1 is already in use: choose another port"
        alerts = [ln.strip() for ln in stderr.splitlines() if "ALERT" in ln]
        detail = alerts[0] if alerts else (stderr.strip().splitlines() or ["no output"])[-1]
        return f"HAProxy failed to start: {detail}"

    def down(self) -> bool:
        """Stop HAProxy and forget the membership (a deleted LB). False when not running."""
        with file_lock(self.state_dir / ".haproxy.lock"):
            pid = self.pid()
            ended = pid is not None and processes.terminate(pid, self._markers())
            self.pid_path.unlink(missing_ok=True)
            self.socket_path.unlink(missing_ok=True)
            self.pem_path.unlink(missing_ok=True)  # a deleted load balancer keeps no key
            if self.lb_path.exists():
                self._write_lb({})
            return ended

    def ensure_running(self) -> bool:
        """Restart HAProxy if it died and re-add every recorded server (runtime-added servers
        do not survive a restart). Returns True when it had to restart."""
        if self.is_running():
            return False
        if not self.port:
            raise SandboxError("no load balancer recorded here: run `lb up --port N` first")
        return self.up()

    # -- TLS ----------------------------------------------------------------------------------

    def _pem_of(self, tls: TLSFiles) -> bytes:
        """The certificate and key as one PEM; SandboxError (one line naming the field, never
        the content) when a file is no longer usable."""
        problem = tls_problem(tls)
        if problem is not None:
            raise SandboxError(problem)
        try:
            pem, digest = combined_pem(tls)
        except OSError as exc:
            raise SandboxError(
                f"service.tls: cannot be read ({exc.strerror or type(exc).__name__})"
            ) from None
        if self.tls_cert_sha256 and digest != self.tls_cert_sha256:
            raise SandboxError(
                f"service.tls.certfile: changed since this plan was made (SHA-256 {digest[:12]}, "
                f"planned {self.tls_cert_sha256[:12]}): {tls.certfile}; plan again"
            )
        return pem

    def _write_pem(self, pem: bytes) -> None:
        """HAProxy's certificate file: 0600 from its creation, in a 0700 directory, replaced
        atomically (files.write_atomic)."""
        self.pem_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.pem_path.parent.chmod(0o700)
        write_atomic(self.pem_path, pem)

    def _renew_certificate(self, tls: TLSFiles) -> bool:
        """Serve `tls`'s pair from now on, when it is not the one loaded: swapped in over the
        admin socket (no restart), then written to the file a restart loads. Returns True
        when it changed. SandboxError when HAProxy refuses it (e.g. a key that does not
        belong to the certificate): the pair loaded before keeps serving."""
        pem = self._pem_of(tls)
        try:
            if self.pem_path.read_bytes() == pem:
                return False
        except OSError:
            pass
        name = str(self.pem_path)
        reply = self._command_with_payload(f"set ssl cert {name}", pem.decode("ascii", "replace"))
        if "Transaction" not in reply:
            raise SandboxError(
                f"HAProxy refused the endpoint's new certificate: {_reply_line(reply)}"
            )
        reply = self.command(f"commit ssl cert {name}")
        if "Success" not in reply:
            self.command(f"abort ssl cert {name}")
            raise SandboxError(
                f"HAProxy refused the endpoint's new certificate and key: {_reply_line(reply)}"
            )
        self._write_pem(pem)
        return True

    def _command_with_payload(self, cmd: str, payload: str) -> str:
        """A runtime API command with a multi-line payload (`cmd <<`, the payload without its
        blank lines, then the empty line that ends it), over the 0600 admin socket only."""
        lines = "\n".join(ln for ln in payload.splitlines() if ln.strip())  # PEM skips them
        return self.command(f"{cmd} <<", payload=lines + "\n")

    # -- runtime API --------------------------------------------------------------------------

    def command(self, cmd: str, timeout: float = 5.0, payload: str = "") -> str:
        """Send one runtime API command over the admin socket and return the reply (`payload`:
        the lines after a command ending in `<<`, sent with the empty line that ends them)."""
        if "\n" in cmd or "\r" in cmd:
            raise SandboxError("runtime API commands are single lines")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(cmd.encode() + b"\n" + (payload.encode() + b"\n" if payload else b""))
                chunks = []
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as exc:
            raise SandboxError(
                f"HAProxy admin socket {self.socket_path} not answering ({exc.strerror or exc}); "
                "is the load balancer up?"
            ) from exc
        return b"".join(chunks).decode(errors="replace")

    def _expect(self, cmd: str, *ok: str) -> None:
        reply = self.command(cmd).strip()
        if ok and not any(o in reply for o in ok):
            raise SandboxError(f"HAProxy refused `{cmd}`: {reply.splitlines()[0] if reply else ''}")

    def _add(self, name: str, host: str, port: int) -> None:
        server = f"{BACKEND}/{name}"
        # A runtime-added server starts in maintenance with checks disabled, and counts as UP
        # once ready, until checks fail. Add it with weight 0 (no traffic), mark it ready and
        # its health down, then give it weight: a replica still in its cold start gets no
        # request before its first passing health check.
        self._expect(
            f"add server {server} {host}:{port} weight 0 {CHECK_ARGS}", "New server registered"
        )
        self._expect(f"enable health {server}")
        self._expect(f"set server {server} state ready")
        self._expect(f"set server {server} health down")
        self._expect(f"set weight {server} {weight_for(self.state_dir, name)}")

    def _delete(self, name: str) -> None:
        server = f"{BACKEND}/{name}"
        self._expect(f"set server {server} state drain")
        self._expect(f"set server {server} state maint")
        self._expect(f"shutdown sessions server {server}")
        self._expect(f"del server {server}", "Server deleted")

    def join_wait_s(self) -> float:
        """How long a change waits for its added servers to pass HAProxy's check before it
        removes the servers they replace: the first check comes within one `inter` (0.5 s)
        of `enable health` and may take the check timeout; two intervals of slack, at most
        JOIN_WAIT_MAX_S (a server that needs longer joins on its own, after the removal)."""
        return min(JOIN_WAIT_MAX_S, self.check.timeout_s + 2 * CHECK_INTER_S)

    def _apply(self, members: Members) -> tuple[list[str], list[str]]:
        """Add before remove: new servers are added first; servers leaving while they still
        take traffic stay until the added ones pass their check (join_wait_s), then drain
        (no new request; up to DRAIN_WAIT_S for those in flight) before they are deleted.
        A server whose address changed is replaced at once: its old address is gone."""
        current = self.members()
        readdressed = sorted(n for n in current if n in members and current[n] != members[n])
        leaving = sorted(n for n in current if n not in members)
        added = sorted(n for n in members if current.get(n) != members[n])
        for name in readdressed:
            self._delete(name)
        for name in added:
            host, port = members[name]
            self._add(name, host, port)
        if leaving:
            stats = self.server_stats()
            serving = [n for n in leaving if n in stats and stats[n].up]
            if serving and added:
                self.wait_until_up(added, timeout=self.join_wait_s())
            for name in leaving:
                self._expect(f"set server {BACKEND}/{name} state drain")
            if serving:
                self._wait_drained(serving, DRAIN_WAIT_S)
            for name in leaving:
                self._delete(name)
        return added, sorted(readdressed + leaving)

    def _wait_drained(self, names: list[str], timeout: float) -> bool:
        """Wait until no request is in flight on the named (draining) servers."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.server_stats()
            if all(stats[n].sessions_current == 0 for n in names if n in stats):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def set_members(self, members: Members) -> tuple[list[str], list[str]]:
        """Make the backend hold exactly `members` (name -> (host, port)); a server whose
        address changed is replaced. Returns (added, removed) names."""
        clean: dict[str, tuple[str, int]] = {}
        for name, (host, port) in members.items():
            _check_member(name, host, int(port))
            clean[name] = (host, int(port))
        with file_lock(self.state_dir / ".haproxy.lock"):
            if not self.is_running():
                raise SandboxError(
                    "load balancer is not running: start it with `hedgeform sandbox lb up`"
                )
            self._write_lb(clean)
            return self._apply(clean)

    def members(self) -> dict[str, tuple[str, int]]:
        """Servers the running backend holds, from `show servers state`."""
        reply = self.command(f"show servers state {BACKEND}")
        lines = [ln for ln in reply.splitlines() if ln.strip()]
        header = next((ln for ln in lines if ln.startswith("#")), None)
        if header is None:
            raise SandboxError(f"unexpected `show servers state` reply: {reply.strip()[:200]}")
        cols = header.lstrip("#").split()
        out: dict[str, tuple[str, int]] = {}
        for line in lines:
            if line.startswith("#") or len(line.split()) < len(cols) - 2:
                continue
            row = dict(zip(cols, line.split(), strict=False))
            if row.get("be_name") == BACKEND:
                out[row["srv_name"]] = (row["srv_addr"], _int(row.get("srv_port")))
        return out

    def log_lines(self) -> list[str]:
        """HAProxy's log (requests, servers going up and down), oldest first, from its ring
        buffer (`render_config`). SandboxError when it runs without one (started by an older
        Hedgeform: `hedgeform sandbox lb down`, then the next apply starts it again)."""
        reply = self.command(f"show events {LOG_RING}")
        lines = [ln for ln in reply.splitlines() if ln.strip()]
        if lines and not lines[0].startswith("<"):
            raise SandboxError(
                f"this HAProxy keeps no log ({lines[0].strip()[:120]}): it was started before "
                f"Hedgeform configured one; restart it (`hedgeform sandbox lb down --state-dir "
                f"{self.state_dir}`, then apply)"
            )
        return lines

    def stats(self) -> list[dict[str, str]]:
        """`show stat` rows (frontend, backend, servers) as dicts keyed by HAProxy's CSV names."""
        reply = self.command("show stat")
        lines = reply.splitlines()
        if not lines or not lines[0].startswith("# "):
            raise SandboxError(f"unexpected `show stat` reply: {reply.strip()[:200]}")
        lines[0] = lines[0][2:]
        return [dict(row) for row in csv.DictReader(ln for ln in lines if ln.strip())]

    def server_stats(self) -> dict[str, ServerStats]:
        out: dict[str, ServerStats] = {}
        for row in self.stats():
            if row.get("pxname") != BACKEND or row.get("svname") in ("FRONTEND", "BACKEND"):
                continue
            name = row["svname"]
            out[name] = ServerStats(
                name=name,
                status=row.get("status", ""),
                req_tot=_int(row.get("req_tot")),
                req_rate=_int(row.get("req_rate")),
                hrsp_2xx=_int(row.get("hrsp_2xx")),
                hrsp_5xx=_int(row.get("hrsp_5xx")),
                sessions_total=_int(row.get("stot")),
                sessions_current=_int(row.get("scur")),
                hrsp_1xx=_int(row.get("hrsp_1xx")),
                hrsp_3xx=_int(row.get("hrsp_3xx")),
                hrsp_4xx=_int(row.get("hrsp_4xx")),
                hrsp_other=_int(row.get("hrsp_other")),
                econ=_int(row.get("econ")),
                eresp=_int(row.get("eresp")),
                rtime_ms=_int(row.get("rtime")),
                ttime_ms=_int(row.get("ttime")),
            )
        return out

    def frontend_stats(self) -> dict[str, str]:
        for row in self.stats():
            if row.get("pxname") == FRONTEND and row.get("svname") == "FRONTEND":
                return row
        raise SandboxError("HAProxy reports no frontend statistics")

    def request_rate(self) -> int:
        """Requests per second over the last second at the frontend (HAProxy's `req_rate`)."""
        return _int(self.frontend_stats().get("req_rate"))

    def requests_total(self) -> int:
        return _int(self.frontend_stats().get("req_tot"))

    def wait_until_up(self, names: list[str], timeout: float = 10.0) -> bool:
        """Wait until every named server passes its health check."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.server_stats()
            if all(n in stats and stats[n].up for n in names):
                return True
            time.sleep(0.02)
        return False
