"""The server certificate: key, signature hash, validity, names, chain validation (RFC 5280, RFC 9325 §4.5).

Chain validation is done offline on the chain the server sent, with OpenSSL's path validation (via
nassl) against the configured CA file, so it costs no extra handshake.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from dcsaudit.models.tls import CertificateInfo


def _hash_name(cert: x509.Certificate) -> str | None:
    try:
        h = cert.signature_hash_algorithm
    except Exception:  # unsupported algorithm: say "unknown" rather than fail
        return None
    return h.name if h is not None else None


def _key(cert: x509.Certificate) -> tuple[str, int, str | None]:
    try:
        key = cert.public_key()
    except Exception:
        return "other", 0, None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 448, None
    return "other", 0, None


def _names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def _matches(host: str, dns: list[str], ips: list[str]) -> bool:
    try:
        addr = ipaddress.ip_address(host)
        return any(ipaddress.ip_address(i) == addr for i in ips)
    except ValueError:
        h = host.lower().rstrip(".")
        for d in dns:
            d = d.lower().rstrip(".")
            if d == h or (d.startswith("*.") and h.count(".") >= 1 and h.split(".", 1)[1] == d[2:]):
                return True
        return False


def _validate(certs: list[x509.Certificate], ca_file: Path) -> tuple[bool, str | None]:
    """OpenSSL's X509_verify_cert (through nassl): the same path validation DCMTK and Orthanc apply.

    Name matching is reported separately (``matches_address``), as DICOM peers usually pin by CA.
    """
    from cryptography.hazmat.primitives.serialization import Encoding
    from nassl._nassl import X509
    from nassl.cert_chain_verifier import CertificateChainVerificationFailed, CertificateChainVerifier

    try:
        verifier = CertificateChainVerifier.from_file(ca_file)
    except (OSError, ValueError) as exc:
        return False, f"cannot read CA file {ca_file}: {exc}"
    try:
        verifier.verify([X509(c.public_bytes(Encoding.PEM).decode("ascii")) for c in certs])
        return True, None
    except CertificateChainVerificationFailed as exc:
        return False, exc.openssl_error_string
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def describe(host: str, ders: list[bytes], ca_file: Path | None, now: datetime | None = None) -> CertificateInfo:
    """Raises ValueError when the leaf is not a parsable X.509 certificate."""
    now = now or datetime.now(UTC)
    try:
        certs = [x509.load_der_x509_certificate(d) for d in ders]
    except Exception as exc:
        raise ValueError(f"certificate does not parse: {exc}") from None
    leaf = certs[0]
    key_type, bits, curve = _key(leaf)
    dns, ips = _names(leaf)
    nb, na = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    chain = [{"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string(),
              "signature_hash": _hash_name(c) or "unknown",
              "self_signed": "yes" if c.subject == c.issuer else "no"} for c in certs]
    valid: bool | None = None
    error: str | None = None
    if ca_file is not None:
        valid, error = _validate(certs, ca_file)
    return CertificateInfo(
        subject=leaf.subject.rfc4514_string(), issuer=leaf.issuer.rfc4514_string(),
        serial=format(leaf.serial_number, "x"), sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        key_type=key_type,
        key_bits=bits, curve=curve, signature_algorithm=leaf.signature_algorithm_oid._name,
        signature_hash=_hash_name(leaf), not_before=nb.isoformat(), not_after=na.isoformat(),
        days_to_expiry=(na - now).days, expired=na < now, not_yet_valid=nb > now,
        self_signed=leaf.subject == leaf.issuer, san_dns=dns, san_ip=ips, matches_address=_matches(host, dns, ips),
        chain_length=len(certs), chain=chain, chain_valid=valid, chain_error=error,
    )


def ec_curve(der: bytes) -> str | None:
    """The named curve of an EC leaf certificate's key (cryptography's name, e.g. "secp256r1"), else None.

    TLS 1.2 servers use an ECDSA certificate only when the client's supported_groups lists its curve
    (RFC 4492 §5.1, kept by OpenSSL for TLS 1.2), so the group probes must offer it.
    """
    try:
        kind, _bits, curve = _key(x509.load_der_x509_certificate(der))
    except ValueError:
        return None
    return curve if kind == "EC" else None
