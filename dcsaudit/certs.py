"""Throwaway certificates made with ``cryptography`` (trustme is for tests only).

Used where dcsaudit must serve TLS without a configured certificate (``listen``, the syslog collector)
and by the built-in demo, which needs a small CA so that clients can validate and present certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey
IssuerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey  # a configured CA may have either


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dcsaudit"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _sans(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            if h and h != "localhost":
                names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def issue(common_name: str, *, hosts: list[str] | None = None, days: int = 7,
          issuer: tuple[x509.Certificate, IssuerKey] | None = None, ca: bool = False,
          not_before_days: int | None = None) -> tuple[x509.Certificate, PrivateKey]:
    """An ECDSA P-256 / SHA-256 certificate: self-signed without ``issuer``; a CA with ``ca=True``.
    Valid until ``days`` from now, from ``not_before_days`` from now (default: five minutes ago), so an
    expired one is ``days=-1, not_before_days=-30``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = _name(common_name)
    signer_name, signer_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(signer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5) if not_before_days is None
                             else now + dt.timedelta(days=not_before_days)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    if hosts is not None:
        builder = builder.add_extension(_sans(hosts), critical=False)
    return builder.sign(signer_key, hashes.SHA256()), key


def write_pem(cert: x509.Certificate, key: PrivateKey, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.pem`` and ``<stem>.key`` (mode 0600) and return their paths."""
    cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file
