"""Redaction for publication (issue 14 item 5): with --redact no address, host name or AE title of the
deployment appears in any output file, and each becomes the same placeholder everywhere."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from dcsaudit.cli import main
from dcsaudit.export.redact import addresses_in, redact
from dcsaudit.models.report import Report
from dcsaudit.output import write_outputs
from tests.export_support import demo_outputs

pytestmark = pytest.mark.timeout(600)  # the demo runs once per test process (~40 s, more under load)


def _text_of(path: Path) -> str:
    """What a reader of the file sees: the PDF's text, the DOCX's XML text, or the file itself."""
    if path.suffix == ".pdf":
        return subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True,
                              timeout=60, check=True).stdout
    if path.suffix == ".docx":
        with zipfile.ZipFile(path) as z:
            return "\n".join(re.sub(r"<[^>]+>", "", z.read(n).decode("utf-8")) for n in z.namelist()
                             if n.endswith(".xml"))
    return path.read_bytes().decode("utf-8", errors="replace")


def _found(text: str, value: str, case_sensitive: bool) -> bool:
    pattern = r"(?<![A-Za-z0-9_])" + re.escape(value) + r"(?![A-Za-z0-9_]|\.[0-9A-Za-z])"
    return re.search(pattern, text, 0 if case_sensitive else re.I) is not None


def test_address_literals_are_found_but_section_numbers_are_not() -> None:
    text = "peer 10.1.2.3:104, [fe80::1]:2762, RFC 5280 §4.1.2.5, UID 1.2.840.10008.1.1, at 03:11:04, 1.2.3.999"
    assert list(addresses_in(text)) == ["10.1.2.3", "fe80::1"]


def test_demo_report_redacted_in_every_format_consistently(tmp_path: Path) -> None:
    # Given the demo's report (DEMO-PACS on 127.0.0.1, certificates for localhost, syslog HOSTNAME of
    # this machine), When redacted and written in every format, Then none of those values remains,
    # and each placeholder stands for one value everywhere.
    report = Report.model_validate_json((demo_outputs() / "report.json").read_text(encoding="utf-8"))
    redacted, redactor = redact(report)
    assert "127.0.0.1" in redactor.hosts and "DEMO-PACS" in redactor.aes and "localhost" in redactor.hosts
    hostname = {m.hostname for m in report.audit_trail.messages if m.hostname} if report.audit_trail else set()
    assert hostname <= set(redactor.hosts)
    paths = write_outputs(redacted, tmp_path, ("json", "md", "html", "docx"))
    for path in paths.values():
        text = _text_of(path)
        for value in redactor.hosts:
            assert not _found(text, value, case_sensitive=False), (path.name, value)
        for value in redactor.aes:
            assert not _found(text, value, case_sensitive=True), (path.name, value)
        assert redactor.hosts["127.0.0.1"] in text and redactor.aes["DEMO-PACS"] in text
    # consistency: one value, one placeholder, in the report's structure as in the text
    host = redactor.hosts["127.0.0.1"]
    assert {e.host for e in redacted.endpoints} == {host}
    assert {ae.ae_title for ae in redacted.application_entities} == {redactor.aes["DEMO-PACS"]}
    assert redact(report)[1].hosts == redactor.hosts  # same input, same placeholders


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_cli_redact_covers_every_output_of_a_scan_and_its_signed_manifest(tmp_path: Path) -> None:
    # Given a config naming the host, an AE title and a site string, When scanned with --redact,
    # --sign and every format, Then no output (PDF and DOCX text included) contains any of them,
    # and the signed bundle verifies.
    site = "Riverside Imaging Lab"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"deployment: {site} audit\n"
                   "hosts: [{address: 127.0.0.1, name: localhost, tcp_ports: [1]}]\n"
                   "application_entities: [{ae_title: RIVER_PACS_7, host: 127.0.0.1, port: 1}]\n"
                   f"scan: {{udp: false}}\nredact: ['{site}']\n")
    key = ed25519.Ed25519PrivateKey.generate()
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pub = tmp_path / "pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    out = tmp_path / "o"
    status = main(["scan", str(cfg), "--out", str(out), "-q", "--store", "none", "--redact", "--sign", str(key_file),
                   "--format", "json,md,html,docx,pdf"])
    assert status in (0, 1)
    files = sorted(p for p in out.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"report.json", "annex.md", "annex.html", "annex.docx", "annex.pdf",
                                       "manifest.json", "manifest.sig"}
    unredacted = Report.model_validate_json((out / "report.json").read_text())
    secrets = {"127.0.0.1": False, "localhost": False, "RIVER_PACS_7": True, site: False,
               socket.gethostname(): False}
    for path in files:
        if path.suffix == ".sig":
            continue
        text = _text_of(path)
        for value, case_sensitive in secrets.items():
            assert not _found(text, value, case_sensitive), (path.name, value)
    report_text = (out / "report.json").read_text()
    assert "host-1" in report_text and "AE-1" in report_text and "redacted-1" in report_text
    assert {ae.ae_title for ae in unredacted.application_entities} <= {"AE-1"}
    assert main(["verify", str(out), "--public-key", str(pub)]) == 0
