"""The signed evidence bundle (issue 14 item 4): manifest.json + manifest.sig, and ``dcsaudit verify``."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from dcsaudit.cli import main
from dcsaudit.export.bundle import load_signer, write_bundle
from dcsaudit.models.report import Report, RunInfo
from dcsaudit.output import write_outputs

Key = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _pem(key: Key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _public_pem(key: Key, path: Path) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def _cert(key: Key) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Vendor Conformance Signing")])
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
               .not_valid_after(now + timedelta(days=30)))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def _report() -> Report:
    now = datetime.now(UTC)
    return Report(deployment="bundle-test", started_at=now, finished_at=now,
                  run=RunInfo(tool_version="0.1.0", command="scan", policy="default"))


def _bundle(tmp_path: Path, key: Key, with_cert: bool = False) -> Path:
    out = tmp_path / "out"
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(_pem(key) + (_cert(key).public_bytes(serialization.Encoding.PEM) if with_cert else b""))
    report = _report()
    paths = write_outputs(report, out, ("json", "md", "html"))
    write_bundle(report, out, paths.values(), load_signer(key_file))
    return out


@pytest.mark.parametrize("make_key", [ed25519.Ed25519PrivateKey.generate,
                                      lambda: rsa.generate_private_key(65537, 2048),
                                      lambda: ec.generate_private_key(ec.SECP256R1())],
                         ids=["ed25519", "rsa", "ec"])
def test_verify_passes_untouched_and_names_what_changed(tmp_path: Path, make_key: object,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a bundle signed with a key, When verified with its public key, Then exit 0;
    # When one byte of annex.md changes, Then exit 1 naming annex.md.
    key = make_key()  # type: ignore[operator]
    out = _bundle(tmp_path, key)
    public = _public_pem(key, tmp_path / "pub.pem")
    assert main(["verify", str(out), "--public-key", str(public)]) == 0
    assert "signature: valid" in capsys.readouterr().out
    md = out / "annex.md"
    data = bytearray(md.read_bytes())
    data[10] ^= 0x01
    md.write_bytes(bytes(data))
    assert main(["verify", str(out), "--public-key", str(public)]) == 1
    assert "annex.md: differs" in capsys.readouterr().err


def test_verify_fails_on_a_missing_file_and_on_the_wrong_key(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    out = _bundle(tmp_path, key)
    other = _public_pem(ed25519.Ed25519PrivateKey.generate(), tmp_path / "other.pem")
    assert main(["verify", str(out), "--public-key", str(other)]) == 1
    assert "signature does not verify" in capsys.readouterr().err
    (out / "annex.html").unlink()
    assert main(["verify", str(out), "--public-key", str(_public_pem(key, tmp_path / "pub.pem"))]) == 1
    assert "annex.html: missing" in capsys.readouterr().err


def test_changed_manifest_or_removed_signature_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A manifest edited to match a changed file no longer matches its signature.
    key = ec.generate_private_key(ec.SECP384R1())
    out = _bundle(tmp_path, key)
    public = _public_pem(key, tmp_path / "pub.pem")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["deployment"] = "someone else"
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["verify", str(out), "--public-key", str(public)]) == 1
    (out / "manifest.sig").unlink()
    assert main(["verify", str(out), "--public-key", str(public)]) == 1
    assert "manifest.sig" in capsys.readouterr().err


def test_without_a_key_only_integrity_is_checked_and_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _bundle(tmp_path, ed25519.Ed25519PrivateKey.generate())
    assert main(["verify", str(out)]) == 0
    said = capsys.readouterr().out
    assert "integrity: all 3 files match" in said and "NOT checked" in said
    (out / "report.json").write_text("{}")
    assert main(["verify", str(out)]) == 1
    assert "report.json: differs" in capsys.readouterr().err


def test_certificate_verifies_and_is_named_in_the_manifest(tmp_path: Path) -> None:
    # Given a key file holding the key and its certificate, When verified with --cert, Then exit 0,
    # and the manifest names the certificate and records SHA-256, tool version and run times.
    key = rsa.generate_private_key(65537, 2048)
    out = _bundle(tmp_path, key, with_cert=True)
    cert_file = tmp_path / "cert.pem"
    cert_file.write_bytes(_cert(key).public_bytes(serialization.Encoding.PEM))
    assert main(["verify", str(out), "--cert", str(cert_file)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["signature"]["certificate_subject"] == "CN=Vendor Conformance Signing"
    assert manifest["tool_version"] == "0.1.0" and manifest["started_at"]
    assert {f["path"] for f in manifest["files"]} == {"report.json", "annex.md", "annex.html"}
    other = tmp_path / "other.pem"
    other.write_bytes(_cert(rsa.generate_private_key(65537, 2048)).public_bytes(serialization.Encoding.PEM))
    assert main(["verify", str(out), "--cert", str(other)]) == 1


def test_signature_checks_with_openssl(tmp_path: Path) -> None:
    # Anyone can check the bundle without dcsaudit: the signature is ECDSA SHA-256 over manifest.json.
    key = ec.generate_private_key(ec.SECP256R1())
    out = _bundle(tmp_path, key)
    public = _public_pem(key, tmp_path / "pub.pem")
    done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(public), "-signature",
                           str(out / "manifest.sig"), str(out / "manifest.json")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "Verified OK" in done.stdout


def test_unusable_keys_are_usage_errors_before_the_scan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("deployment: t\nhosts: [{address: 127.0.0.1, tcp_ports: [1]}]\nscan: {udp: false}\n")
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse")))
    weak = tmp_path / "weak.pem"
    weak.write_bytes(_pem(rsa.generate_private_key(65537, 1024)))
    for bad, said in ((tmp_path / "absent.pem", "No such file"), (cfg, "no PEM private key"),
                      (encrypted, "encrypted"), (weak, "too weak")):
        assert main(["scan", str(cfg), "--out", str(tmp_path / "o"), "-q", "--sign", str(bad)]) == 2
        err = capsys.readouterr().err
        assert said in err and "correct horse" not in err
        assert not (tmp_path / "o" / "report.json").exists()  # nothing was scanned
    assert main(["scan", str(cfg), "--out", str(tmp_path / "o"), "-q", "--format", "json,rtf"]) == 2
    assert "unknown format 'rtf'" in capsys.readouterr().err
    assert main(["verify", str(tmp_path)]) == 2  # no manifest there


def test_formats_select_the_files_and_an_unsigned_run_removes_a_stale_manifest(tmp_path: Path) -> None:
    # Given a signed bundle, When the next run into the same directory is not signed and asks for md
    # only, Then only annex.md is rewritten and the old manifest and signature are gone (they would
    # describe files that changed).
    out = _bundle(tmp_path, ed25519.Ed25519PrivateKey.generate())
    before = (out / "report.json").read_bytes()
    paths = write_outputs(_report(), out, ("md",))
    assert list(paths) == ["annex.md"]
    assert write_bundle(_report(), out, paths.values(), None) == {}
    assert not (out / "manifest.json").exists() and not (out / "manifest.sig").exists()
    assert (out / "report.json").read_bytes() == before
