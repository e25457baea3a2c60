"""SkyServe's `service.tls` files: checked where the spec is loaded, read where HAProxy needs them.

`service.tls: {keyfile: PATH, certfile: PATH}` names PEM files on the machine running
Hedgeform (SkyServe: on its controller; `~` is expanded, a relative path is taken from the
directory Hedgeform runs in). Only the local sandbox serves them (its HAProxy); the clouds'
load balancers take a certificate their own way (docs/spec.md).

The private key's content is read in two places only: `combined_pem`, which the sandbox writes
into HAProxy's own 0600 file and sends over its 0600 admin socket (sandbox/haproxy.py), and the
check here that the file is a PEM private key. It is never returned in an error, a digest, a
log line, tfvars or argv: what the plan and Terraform see of the pair is the two paths and
the certificate's SHA-256 (`cert_digest`; a certificate is public, and a new key always comes
with a new certificate, so the certificate's digest changes whenever the pair does).

Every problem is one line naming the field (`service.tls.keyfile: ...`), never the content.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass

from reconciler.spec.errors import Problems
from reconciler.spec.model import TLSFiles

MAX_PEM_BYTES = 1 << 20  # a certificate chain or a key is a few KiB; 1 MiB is a wrong file
CERT_MARKER = b"-----BEGIN CERTIFICATE-----"
KEY_BEGIN = b"-----BEGIN "
KEY_MARKER = b"PRIVATE KEY-----"
FIELD = "service.tls"


@dataclass(frozen=True)
class _Rule:
    what: str  # "certificate" or "private key", for messages
    key: str  # the field: keyfile or certfile


_RULES = (_Rule("private key", "keyfile"), _Rule("certificate", "certfile"))


def absolute(path: str) -> str:
    """`path` with `~` expanded, absolute (from the current directory), symlinks kept: a
    renewed certificate behind a symlink (certbot's `live/`) is read through it."""
    return os.path.abspath(os.path.expanduser(path))


def file_problem(path: str, what: str) -> str | None:
    """Why `path` cannot be the endpoint's `what` (one phrase naming the path, never its
    content), or None when it is a readable regular file of PEM that holds one."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return f"no such file: {path}"
    except PermissionError:
        return f"cannot be reached (permission denied): {path}"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__}): {path}"
    if stat.S_ISDIR(info.st_mode):
        return f"is a directory, not a PEM file: {path}"
    if not stat.S_ISREG(info.st_mode):
        return f"is not a regular file (a device, FIFO or socket): {path}"
    if info.st_size > MAX_PEM_BYTES:
        return f"is larger than 1 MiB, not a PEM {what}: {path}"
    try:
        content = _read(path)
    except PermissionError:
        return f"is not readable by this user (permission denied): {path}"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__}): {path}"
    if what == "certificate":
        if CERT_MARKER not in content:
            return f"holds no PEM certificate (-----BEGIN CERTIFICATE-----): {path}"
        return None
    begins = [line for line in content.splitlines() if line.startswith(KEY_BEGIN)]
    if not any(line.rstrip().endswith(KEY_MARKER) for line in begins):
        return f"holds no PEM private key (-----BEGIN ... PRIVATE KEY-----): {path}"
    if any(b"ENCRYPTED" in line for line in begins) or b"Proc-Type: 4,ENCRYPTED" in content:
        return (
            f"is an encrypted private key, whose passphrase HAProxy would ask for on a "
            f"terminal: decrypt it into a 0600 file (openssl pkey -in KEY -out KEY.plain): {path}"
        )
    return None


def check_tls(tls: TLSFiles, problems: Problems) -> TLSFiles | None:
    """`tls` with absolute paths when both files are usable; else None, one problem line per
    bad file (`service.tls.keyfile: no such file: /path`)."""
    paths = {rule.key: absolute(getattr(tls, rule.key)) for rule in _RULES}
    ok = True
    for rule in _RULES:
        problem = file_problem(paths[rule.key], rule.what)
        if problem is not None:
            problems.add(f"{FIELD}.{rule.key}", problem)
            ok = False
    return TLSFiles(keyfile=paths["keyfile"], certfile=paths["certfile"]) if ok else None


def tls_problem(tls: TLSFiles) -> str | None:
    """The first problem of `tls`'s files as one line (`service.tls.certfile: ...`), or None:
    for what reads them later than the loader (the files may have changed since)."""
    problems = Problems()
    check_tls(tls, problems)
    return problems.lines[0] if problems else None


def cert_digest(tls: TLSFiles) -> str:
    """SHA-256 (hex) of the certificate file: what makes a plan when the pair is renewed.
    OSError when it cannot be read."""
    return hashlib.sha256(_read(absolute(tls.certfile))).hexdigest()


def leaf_certificate(tls: TLSFiles) -> str:
    """The first certificate of the certfile, PEM text (the one the endpoint must present)."""
    text = _read(absolute(tls.certfile)).decode("ascii", errors="replace")
    start = text.find(CERT_MARKER.decode())
    end_marker = "-----END CERTIFICATE-----"
    end = text.find(end_marker, start)
    if start < 0 or end < 0:
        raise ValueError(f"{FIELD}.certfile: holds no PEM certificate")
    return text[start : end + len(end_marker)] + "\n"


def combined_pem(tls: TLSFiles) -> tuple[bytes, str]:
    """The certificate file then the key file, as one PEM (what HAProxy's `crt` loads), and
    the SHA-256 of the certificate file as read for it (`cert_digest`'s value, from the same
    bytes). The caller writes the PEM 0600 or sends it over the 0600 admin socket, and
    nowhere else."""
    cert, key = absolute(tls.certfile), absolute(tls.keyfile)
    cert_pem = _read(cert)
    digest = hashlib.sha256(cert_pem).hexdigest()
    if os.path.realpath(cert) == os.path.realpath(key):
        return cert_pem, digest
    key_pem = _read(key)
    return cert_pem.rstrip(b"\n") + b"\n" + key_pem.rstrip(b"\n") + b"\n", digest


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(MAX_PEM_BYTES + 1)
