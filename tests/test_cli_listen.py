"""`dcsaudit listen` end to end through the command line: SCP + syslog collector, report and annex."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dcsaudit.audit_originator import AuditOriginator
from tests.peers.common import LOOPBACK, TestPKI, free_port, require_program, stop, wait_for_port
from tests.test_audit_messages import originator_messages


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
        stop(proc)
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


def _listen(args: list[str], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "dcsaudit.cli", "listen", *args, "--out", str(out), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_keeps_what_listen_captured(tmp_path: Path, sig: signal.Signals) -> None:
    echoscu = require_program("echoscu")
    dicom_port, udp_port, out = free_port(), free_port(), tmp_path / "out"
    # Given listen running for an hour, having captured one association and one UDP audit message
    proc = _listen(["--dicom-port", str(dicom_port), "--syslog-udp-port", str(udp_port), "--duration", "3600"], out)
    try:
        wait_for_port(dicom_port)
        echo = subprocess.run([echoscu, "-aet", "BEFORESIG", LOOPBACK, str(dicom_port)], capture_output=True, timeout=20)
        assert echo.returncode == 0, echo.stderr
        with AuditOriginator(LOOPBACK, udp_port, "udp") as udp:
            assert udp.user_authentication("bob", False, LOOPBACK)
        time.sleep(0.5)
        # When the scheduler stops it
        t0 = time.monotonic()
        proc.send_signal(sig)
        _stdout, stderr = proc.communicate(timeout=20)
        took = time.monotonic() - t0
    finally:
        stop(proc)
    # Then it ends within seconds, exit 4, with a partial report that holds what was captured
    assert proc.returncode == 4, stderr.decode()
    assert took < 5, took
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["complete"] is False and sig.name in report["run"]["interrupted"]
    assert [i["calling_ae"] for i in report["initiators"]] == ["BEFORESIG"]
    assert [m["event_id"] for m in report["audit_trail"]["messages"]] == ["110114"]
    lines = (out / "messages.jsonl").read_text().splitlines()  # the same index twice only if the worker was cut off
    assert lines and {json.loads(line)["index"] for line in lines} == {0}


@pytest.mark.timeout(60)
def test_duration_is_kept_and_every_datagram_is_accounted_for(tmp_path: Path) -> None:
    udp_port, out = free_port(kind=socket.SOCK_DGRAM), tmp_path / "out"
    box = [originator_messages()["auth"]]
    # Given listen for 3 s on UDP
    t0 = time.monotonic()
    proc = _listen(["--syslog-udp-port", str(udp_port), "--duration", "3"], out)
    try:
        deadline = time.monotonic() + 15
        while not any(f"{udp_port:04X}" in line.split()[1] for line in
                      Path("/proc/net/udp").read_text().splitlines()[1:]) and time.monotonic() < deadline:
            time.sleep(0.05)
        bound_at = time.monotonic()
        # When 6,000 datagrams arrive unpaced, the last of them in the window's last second
        sent = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            while time.monotonic() < bound_at + 2.6 and sent < 6000:
                u.sendto(box[0], (LOOPBACK, udp_port))
                sent += 1
                if sent % 500 == 0:
                    time.sleep(0.2)
        _stdout, stderr = proc.communicate(timeout=30)
        ended = time.monotonic()
    finally:
        stop(proc)
    # Then listen ended within 2 s of its duration (plus start-up), and each datagram was kept or counted
    assert proc.returncode in (0, 1), stderr.decode()
    assert ended - bound_at < 3 + 2 + 0.5, (ended - bound_at, bound_at - t0)
    trail = json.loads((out / "report.json").read_text())["audit_trail"]
    print(f"sent {sent}, received {trail['received']}, classified {trail['classified']}, dropped {trail['dropped']}, "
          f"ended {ended - bound_at - 3:.2f} s after the window")
    assert trail["received"] + trail["dropped"].get("udp_kernel_drops", 0) == sent, (trail["received"], trail["dropped"])
    assert trail["received"] == (out / "received.log").read_bytes().count(b" udp datagram ")
    assert trail["udp_receive_buffer"] and trail["udp_receive_buffer"] >= 1024 * 1024
