"""--redact covers the -v/-vv log and listen's outputs too (issue 14 item 5, brief H10 items 2 and 3)."""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from dcsaudit.audit_originator import AuditOriginator
from dcsaudit.cli import main
from dcsaudit.export.redact import _received_records
from tests.peers.common import LOOPBACK, TestPKI, free_port, require_program, stop, wait_for_port
from tests.peers.dicom_peers import pynetdicom_scp

AE_TITLE = "H10_LAKE_PACS"
SITE = "Lakeside Radiology"


def _found(text: str, value: str, case_sensitive: bool) -> bool:
    pattern = r"(?<![A-Za-z0-9_])" + re.escape(value) + r"(?![A-Za-z0-9_]|\.[0-9A-Za-z])"
    return re.search(pattern, text, 0 if case_sensitive else re.I) is not None


def _scan(cfg: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dcsaudit.cli", "scan", str(cfg), "--out", str(out), "-vv",
                           "--store", "none", *extra], capture_output=True, text=True, timeout=150)


@pytest.mark.timeout(300)
def test_verbose_log_of_a_redacted_scan_names_no_host_or_ae(tmp_path: Path) -> None:
    # Given a pynetdicom SCP on loopback, configured by address, host name, AE title and a site string
    with pynetdicom_scp(AE_TITLE, acse_timeout=1, network_timeout=2) as port:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"deployment: {SITE} audit\n"
                       f"hosts: [{{address: {LOOPBACK}, name: localhost, tcp_ports: [{port}]}}]\n"
                       f"application_entities: [{{ae_title: {AE_TITLE}, host: {LOOPBACK}, port: {port}}}]\n"
                       f"scan: {{udp: false}}\nredact: ['{SITE}']\n")
        # When it is scanned with -vv, once plainly (the control) and once with --redact
        plain = _scan(cfg, tmp_path / "plain")
        redacted = _scan(cfg, tmp_path / "redacted", "--redact")
    identifiers = {LOOPBACK: False, "localhost": False, AE_TITLE: True, SITE: False}
    # Then the plain log names the target (the log does carry it: this test can fail) ...
    assert plain.returncode in (0, 1), plain.stderr[-2000:]
    assert _found(plain.stderr, LOOPBACK, False), plain.stderr[-2000:]
    # ... and the redacted one names none of them, but their placeholders, the report's
    assert redacted.returncode in (0, 1), redacted.stderr[-2000:]
    err = redacted.stderr
    for value, case_sensitive in identifiers.items():
        assert not _found(err, value, case_sensitive), (value, [ln for ln in err.splitlines() if value in ln][:3])
    report = json.loads((tmp_path / "redacted" / "report.json").read_text())
    host, ae = report["application_entities"][0]["host"], report["application_entities"][0]["ae_title"]
    assert re.fullmatch(r"host-\d+", host) and re.fullmatch(r"AE-\d+", ae)
    assert _found(err, host, True), err[-2000:]  # the same placeholder as report.json


def test_log_filter_uses_the_run_mapping_for_every_identifier(tmp_path: Path) -> None:
    # Given --redact set up for a config (as scan does before the audit starts) and a log file
    from dcsaudit import logs
    from dcsaudit.config import parse_config
    from dcsaudit.export.publish import from_args

    config = parse_config({"deployment": "d", "redact": [SITE],
                           "hosts": [{"address": "192.0.2.10", "name": "pacs.lake.example", "tcp_ports": [104]}],
                           "application_entities": [{"ae_title": AE_TITLE, "host": "192.0.2.10", "port": 104}]},
                           "test")
    log_file = tmp_path / "run.log"
    logs.setup(2, log_file)
    publish = from_args(argparse.Namespace(formats="json", redact=True), config)
    # When lines name the AE title, the host name, the site string, an address only the wire revealed,
    # and a traceback names the host
    log = logging.getLogger("dcsaudit.probes.h10")
    log.info("assoc %s@%s (%s) at %s", AE_TITLE, "PACS.lake.example", SITE, "198.51.100.7:40000")
    try:
        raise OSError("connect to pacs.lake.example (192.0.2.10) refused")
    except OSError:
        log.debug("probe failed", exc_info=True)
    for h in logging.getLogger("dcsaudit").handlers:
        h.flush()
    text = log_file.read_text()
    logs.setup(0, None)
    # Then none is in the log, and each has the placeholder report.json gets for it
    for value, case_sensitive in ((AE_TITLE, True), ("pacs.lake.example", False), (SITE, False),
                                  ("198.51.100.7", False), ("192.0.2.10", False)):
        assert not _found(text, value, case_sensitive), (value, text)
    assert "Traceback" in text and "refused" in text
    redactor = publish.redactor
    assert redactor.aes[AE_TITLE] in text and redactor.hosts["pacs.lake.example"] in text
    assert redactor.hosts["198.51.100.7"] in text and redactor.extra[SITE.lower()] in text
    assert redactor.hosts["198.51.100.7"] == "host-3"  # after the config's two: the mapping only grows


@pytest.mark.timeout(120)
def test_listen_takes_format_sign_redact_and_redacts_the_collector_files(pki: TestPKI, tmp_path: Path) -> None:
    echoscu = require_program("echoscu")
    dicom_port, syslog_port, out = free_port(), free_port(), tmp_path / "out"
    key = ed25519.Ed25519PrivateKey.generate()
    key_file, pub = tmp_path / "k.pem", tmp_path / "pub.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    # Given listen with --redact, --sign and docx among its formats, for a few seconds
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcsaudit.cli", "listen", "--dicom-port", str(dicom_port),
         "--syslog-tls-port", str(syslog_port), "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
         "--tls-ca", str(pki.ca_file), "--duration", "5", "--out", str(out), "-vv", "--redact",
         "--sign", str(key_file), "--format", "json,md,docx"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(dicom_port)
        wait_for_port(syslog_port)
        # When an initiator MODALITY_H10 associates and the product's originator sends audit messages
        # naming itself (source id) and this machine (syslog HOSTNAME)
        echo = subprocess.run([echoscu, "-aet", "MODALITY_H10", "-aec", "DCSAUDIT", LOOPBACK, str(dicom_port)],
                              capture_output=True, timeout=20)
        assert echo.returncode == 0, echo.stderr
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        originator = AuditOriginator(LOOPBACK, syslog_port, "tls", ssl_context=ctx, source_id="MODALITY_H10")
        assert originator.application_activity(True, ["MODALITY_H10"])
        assert originator.user_authentication("alice", True, LOOPBACK)
        originator.close()
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode in (0, 1), stderr[-2000:]
    # Then the outputs asked for, the collector's two files and the signed manifest are there
    names = {p.name for p in out.iterdir()}
    assert {"report.json", "annex.md", "annex.docx", "messages.jsonl", "received.log", "manifest.json",
            "manifest.sig"} <= names and "annex.html" not in names
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"messages.jsonl", "received.log"} <= {f["path"] for f in manifest["files"]}
    assert main(["verify", str(out), "--public-key", str(pub)]) == 0
    # and no file nor the log names the initiator, the originator's host or the addresses
    received = (out / "received.log").read_bytes()  # records: "LEN … PEER\n" + LEN bytes + "\n"
    records = list(_received_records(io.BytesIO(received)))
    assert len(records) >= 2 and sum(len(h) for h, _ in records)  # record lengths still frame the payloads
    texts = {p.name: p.read_bytes().decode("utf-8", "replace") for p in out.iterdir()
             if p.suffix in (".json", ".md", ".jsonl", ".log")}
    texts["stderr"] = stderr
    for name, text in texts.items():
        for value, case_sensitive in (("MODALITY_H10", True), (socket.gethostname(), False), (LOOPBACK, False)):
            assert not _found(text, value, case_sensitive), (name, value)
    report = json.loads((out / "report.json").read_text())
    [initiator] = report["initiators"]
    assert re.fullmatch(r"AE-\d+", initiator["calling_ae"])
    # the same placeholder in the raw messages (AETITLES=, AuditSourceID) as in report.json
    assert f"AETITLES={initiator['calling_ae']}" in received.decode("utf-8", "replace")


def test_collector_files_are_rewritten_with_their_framing_and_bytes_kept(tmp_path: Path) -> None:
    # Given a received.log of two records (one with a byte that is not UTF-8) and its messages.jsonl
    from dcsaudit.export.redact import Redactor, collect_collector_files, redact_collector_files

    payloads = [b"<85>1 2026-12-03T06:00:00Z ct-ward7 app 1 - - ip 10.20.30.40 \xff end",
                b"<85>1 2026-12-03T06:00:01Z - app 1 - - AETITLES=CT_WARD7"]
    raw = b"".join(b"%d tls octet-counting 1 17.5 10.20.30.40:5%d\n" % (len(p), i) + p + b"\n"
                   for i, p in enumerate(payloads))
    (tmp_path / "received.log").write_bytes(raw)
    (tmp_path / "messages.jsonl").write_text('{"peer": "10.20.30.40:50", "hostname": "ct-ward7", "x": "CT_WARD7"}\n')
    redactor = Redactor()
    redactor.add_ae("CT_WARD7")  # as the report's initiators would add it
    # When collected and rewritten
    files = collect_collector_files(redactor, tmp_path)
    redact_collector_files(redactor, files)
    # Then the HOSTNAME and peer became placeholders, each record's length frames its new payload,
    # the odd byte survives, and the JSON line is still JSON
    out = (tmp_path / "received.log").read_bytes()
    records = list(_received_records(io.BytesIO(out)))
    assert len(records) == 2 and sum(len(p) for _, p in records) + sum(len(b" ".join(h)) + 2 for h, _ in records) == len(out)
    host, addr, ae = redactor.hosts["ct-ward7"], redactor.hosts["10.20.30.40"], redactor.aes["CT_WARD7"]
    assert records[0][1] == f"<85>1 2026-12-03T06:00:00Z {host} app 1 - - ip {addr} ".encode() + b"\xff end"
    assert records[1][1].endswith(f"AETITLES={ae}".encode()) and records[0][0][5] == f"{addr}:50".encode()
    doc = json.loads((tmp_path / "messages.jsonl").read_text())
    assert doc == {"peer": f"{addr}:50", "hostname": host, "x": ae}
