"""Self-signed certificates and keys for the `service.tls` tests (the `cryptography` package,
which the cloud SDKs already depend on)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pair:
    certfile: Path
    keyfile: Path

    @property
    def key_body(self) -> str:
        """The base64 body of the private key: what must appear in no file, log or argv."""
        lines = self.keyfile.read_text().splitlines()
        return "".join(line for line in lines if not line.startswith("-----"))

    def key_lines(self) -> list[str]:
        """Each base64 line of the key (a leak may be re-wrapped, so each is searched)."""
        return [ln for ln in self.keyfile.read_text().splitlines() if not ln.startswith("-----")]


def make_pair(directory: Path, name: str = "endpoint", common_name: str = "localhost") -> Pair:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PKCS#8, no
    passphrase), as `<name>.crt` and `<name>.key` in `directory` (the key 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / f"{name}.crt", directory / f"{name}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    keyfile.chmod(0o600)
    return Pair(certfile, keyfile)


def presented(port: int) -> bytes:
    """The certificate the endpoint on 127.0.0.1:`port` presents (DER), read without
    verifying it: to tell two pairs apart."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der
