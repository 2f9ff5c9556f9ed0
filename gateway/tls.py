"""TLS material: the configured certificate, or a self-signed one made in
``state_dir`` on first use."""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from pathlib import Path

from gateway.private import private_dir, write_private

__all__ = ["ensure_certificate"]

_lock = threading.Lock()


def ensure_certificate(state_dir: Path | str, certfile: Path | None = None,
                       keyfile: Path | None = None) -> tuple[Path, Path]:
    """(certificate, key) paths: the configured pair when given, else a
    self-signed pair for localhost kept in ``state_dir/tls`` (created once,
    folder 0700, files 0600 from the start)."""
    if certfile:
        return Path(certfile), Path(keyfile or certfile)
    d = Path(state_dir) / "tls"
    cert, key = d / "selfsigned.crt", d / "selfsigned.key"
    with _lock:
        if cert.exists() and key.exists():
            return cert, key
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        private_dir(d)
        pk = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway")])
        now = dt.datetime.now(dt.timezone.utc)
        certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pk.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(pk, hashes.SHA256())
        )
        write_private(key, pk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
        write_private(cert, certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key
