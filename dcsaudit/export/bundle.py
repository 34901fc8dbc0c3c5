"""The signed evidence bundle: manifest.json (SHA-256 of every output file, tool version, run times,
config digest without secrets) and its detached signature manifest.sig, and ``dcsaudit verify``.

Signatures (over the exact bytes of manifest.json), so that anyone can check them with OpenSSL too:
- Ed25519: the 64-byte signature (``openssl pkeyutl -verify -rawin -pubin -inkey pub.pem``);
- RSA: PKCS#1 v1.5 with SHA-256; EC: ECDSA with SHA-256, DER (``openssl dgst -sha256 -verify pub.pem
  -signature manifest.sig manifest.json``).
A certificate given with the key (in the same PEM file or ``--sign-cert``) is named in the manifest
(subject, SHA-256); ``verify --cert`` checks the signature under that certificate's key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from dcsaudit.models.report import Report

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MANIFEST_FORMAT = "dcsaudit-manifest/1"

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class BundleError(Exception):
    """A key or certificate that cannot be used (a usage error: exit 2). Never repeats key material."""


@dataclass(frozen=True)
class Signer:
    key: PrivateKey
    certificate: x509.Certificate | None = None

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(data)
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


def algorithm(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size} PKCS#1 v1.5 SHA-256"
    return f"ECDSA {key.curve.name} SHA-256"


def public_key_sha256(key: PublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _pem_blocks(data: bytes, kind: bytes) -> list[bytes]:
    out, start = [], 0
    begin = b"-----BEGIN " + kind
    while (i := data.find(begin, start)) >= 0:
        j = data.find(b"-----END ", i)
        k = data.find(b"-----", j + 9) if j >= 0 else -1
        if k < 0:
            break
        out.append(data[i:k + 5] + b"\n")
        start = k + 5
    return out


def load_signer(key_file: Path, cert_file: Path | None = None) -> Signer:
    """A PEM private key (Ed25519, RSA or EC; not encrypted), optionally with its X.509 certificate in
    the same file or in ``cert_file``; the certificate must belong to the key."""
    try:
        data = key_file.read_bytes()
    except OSError as exc:
        raise BundleError(f"--sign {key_file}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise BundleError(f"--sign {key_file}: the private key is encrypted; give an unencrypted key "
                          "(kept on the signing machine only)") from None
    except ValueError:
        raise BundleError(f"--sign {key_file}: no PEM private key found") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise BundleError(f"--sign {key_file}: {type(key).__name__} keys are not supported (Ed25519, RSA, EC)")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise BundleError(f"--sign {key_file}: an RSA key of {key.key_size} bits is too weak (2048 or more)")
    cert_pem = _pem_blocks(data, b"CERTIFICATE")
    if cert_file is not None:
        try:
            cert_pem = _pem_blocks(cert_file.read_bytes(), b"CERTIFICATE")
        except OSError as exc:
            raise BundleError(f"--sign-cert {cert_file}: {exc.strerror}") from None
        if not cert_pem:
            raise BundleError(f"--sign-cert {cert_file}: no PEM certificate found")
    cert = x509.load_pem_x509_certificate(cert_pem[0]) if cert_pem else None
    if cert is not None and public_key_sha256(cert.public_key()) != public_key_sha256(key.public_key()):  # type: ignore[arg-type]
        raise BundleError(f"--sign: the certificate ({cert.subject.rfc4514_string()}) is not the key's")
    return Signer(key, cert)


def load_public_key(public_key: Path | None, cert: Path | None) -> PublicKey | None:
    """The key ``verify`` checks the signature with: a PEM public key, or a PEM/DER certificate's."""
    if public_key is None and cert is None:
        return None
    path = public_key or cert
    assert path is not None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: {exc.strerror}") from None
    try:
        if public_key is not None:
            key = serialization.load_pem_public_key(data)
        else:
            pem = _pem_blocks(data, b"CERTIFICATE")
            key = (x509.load_pem_x509_certificate(pem[0]) if pem else x509.load_der_x509_certificate(data)).public_key()
    except ValueError:
        raise BundleError(f"{path}: no {'PEM public key' if public_key else 'certificate'} found") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise BundleError(f"{path}: {type(key).__name__} keys are not supported (Ed25519, RSA, EC)")
    return key


def signature_valid(key: PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_digest(config: Any) -> str | None:
    """SHA-256 of the deployment config as canonical JSON, without its ``credentials`` section (secret
    references and key paths): a reader holding the same config can recompute it."""
    if config is None:
        return None
    data = config.model_dump(mode="json", exclude={"credentials"})
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def manifest(report: Report, out_dir: Path, files: Iterable[Path], signer: Signer | None,
             config_sha256: str | None, redacted: bool) -> bytes:
    entries = []
    for path in sorted(files, key=lambda p: p.name):
        entries.append({"path": path.relative_to(out_dir).as_posix(), "sha256": sha256_file(path),
                        "size": path.stat().st_size})
    signature: dict[str, Any] | None = None
    if signer is not None:
        signature = {"file": SIGNATURE, "algorithm": algorithm(signer.key),
                     "public_key_sha256": public_key_sha256(signer.key.public_key())}
        if signer.certificate is not None:
            signature["certificate_subject"] = signer.certificate.subject.rfc4514_string()
            signature["certificate_sha256"] = signer.certificate.fingerprint(hashes.SHA256()).hex()
    doc = {
        "format": MANIFEST_FORMAT,
        "tool": report.run.tool, "tool_version": report.run.tool_version,
        "deployment": report.deployment, "command": report.run.command,
        "started_at": report.started_at.isoformat(), "finished_at": report.finished_at.isoformat(),
        "created_at": datetime.now(UTC).isoformat(),
        "config_sha256": config_sha256,
        "config_sha256_covers": "the deployment config as canonical JSON (sorted keys), credentials excluded"
        if config_sha256 else "no config file (built-in demo or listen)",
        "redacted": redacted,
        "files": entries,
        "signature": signature,
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_bundle(report: Report, out_dir: Path, outputs: Iterable[Path], signer: Signer | None,
                 config_sha256: str | None = None, redacted: bool = False) -> dict[str, Path]:
    """manifest.json and manifest.sig over ``outputs`` when signing; otherwise removes the manifest
    and signature a previous run left in ``out_dir`` (they would describe files that changed)."""
    from dcsaudit.output import atomic_write

    paths = {MANIFEST: out_dir / MANIFEST, SIGNATURE: out_dir / SIGNATURE}
    if signer is None:
        for stale in paths.values():
            stale.unlink(missing_ok=True)
        return {}
    data = manifest(report, out_dir, outputs, signer, config_sha256, redacted)
    paths[SIGNATURE].unlink(missing_ok=True)  # never a new manifest beside an old signature
    atomic_write(paths[MANIFEST], data)
    atomic_write(paths[SIGNATURE], signer.sign(data))
    return paths


@dataclass(frozen=True)
class Verdict:
    ok: bool
    lines: list[str]


def verify(directory: Path, key: PublicKey | None) -> Verdict:
    """Every file the manifest lists is there with its SHA-256, and (with a key) manifest.sig is a
    valid signature of manifest.json under that key. The first problem found ends the check."""
    try:
        raw = (directory / MANIFEST).read_bytes()
        doc = json.loads(raw)
        files = doc["files"]
        if doc.get("format") != MANIFEST_FORMAT or not isinstance(files, list):
            raise ValueError
    except OSError as exc:
        return Verdict(False, [f"{MANIFEST}: {exc.strerror}"])
    except (ValueError, KeyError, TypeError):
        return Verdict(False, [f"{MANIFEST}: not a dcsaudit manifest"])
    lines = []
    if key is not None:
        try:
            sig = (directory / SIGNATURE).read_bytes()
        except OSError as exc:
            return Verdict(False, [f"{SIGNATURE}: {exc.strerror}: the bundle is not signed or the signature was removed"])
        if not signature_valid(key, sig, raw):
            return Verdict(False, [f"{SIGNATURE}: the signature does not verify under the given key "
                                   f"(SHA-256 {public_key_sha256(key)[:16]}…): wrong key, or manifest.json was changed"])
        lines.append(f"signature: valid ({algorithm(key)}, public key SHA-256 {public_key_sha256(key)[:16]}…)")
    for entry in files:
        rel = str(entry.get("path", ""))
        path = (directory / rel).resolve()
        if Path(rel).is_absolute() or ".." in Path(rel).parts or directory.resolve() not in path.parents:
            return Verdict(False, [f"{rel}: the manifest names a path outside the bundle"])
        if not path.is_file():
            return Verdict(False, [f"{rel}: missing"])
        if sha256_file(path) != entry.get("sha256"):
            return Verdict(False, [f"{rel}: differs from the manifest (SHA-256 does not match)"])
    lines.append(f"integrity: all {len(files)} files match {MANIFEST}")
    if key is None:
        lines.append("signature: NOT checked (no --public-key or --cert): this says nothing about who made the bundle")
    listed = {str(e.get("path")) for e in files} | {MANIFEST, SIGNATURE}
    extra = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name not in listed
                   and not p.name.startswith("."))
    if extra:
        lines.append(f"not covered by the manifest (not checked): {', '.join(extra)}")
    return Verdict(True, lines)
