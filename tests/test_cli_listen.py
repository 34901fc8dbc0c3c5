"""`dcsaudit listen` end to end through the command line: SCP + syslog collector, report and annex."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

from dcsaudit.audit_originator import AuditOriginator
from tests.peers.common import LOOPBACK, TestPKI, free_port, require_program, wait_for_port


def test_listen_records_initiator_and_audit_messages(pki: TestPKI, tmp_path: Path) -> None:
    echoscu = require_program("echoscu")
    dicom_port, syslog_port, out = free_port(), free_port(), tmp_path / "out"
    # Given dcsaudit listening as SCP and syslog TLS collector for a few seconds
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcsaudit.cli", "listen", "--dicom-port", str(dicom_port),
         "--syslog-tls-port", str(syslog_port), "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
         "--tls-ca", str(pki.ca_file), "--duration", "6", "--out", str(out), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port(dicom_port)
        wait_for_port(syslog_port)
        # When a DCMTK initiator associates and the product's originator sends an audit message
        echo = subprocess.run([echoscu, "-aet", "MODALITY1", "-aec", "DCSAUDIT", LOOPBACK, str(dicom_port)],
                              capture_output=True, timeout=20, env={**os.environ, "TCP_NODELAY": "1"})
        assert echo.returncode == 0, echo.stderr
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        originator = AuditOriginator(LOOPBACK, syslog_port, "tls", ssl_context=ctx, source_id="MODALITY1")
        assert originator.application_activity(True, ["MODALITY1"])
        originator.close()
        _stdout, stderr = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Then listen completes (exit 0/1) and its report holds the initiator and the message
    assert proc.returncode in (0, 1), stderr.decode()
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["command"] == "listen"
    [initiator] = report["initiators"]
    assert initiator["calling_ae"] == "MODALITY1" and initiator["called_ae"] == "DCSAUDIT"
    [message] = report["audit_trail"]["messages"]
    assert message["transport"] == "tls" and message["event_id"] == "110100" and message["schema_valid"]
    annex = (out / "annex.md").read_text()
    assert "Table N.8-8" in annex and "Table N.11-2" in annex
