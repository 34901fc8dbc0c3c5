"""Interruption and outputs (issue 12): a stopped run leaves a valid, marked partial report; outputs
are replaced atomically and readable as the umask says.

The scans run as real ``dcsaudit`` processes (signals go to a process, not to a test function) against
a silent DICOM acceptor on 127.0.0.1 that keeps the association audit waiting.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.peers.common import LOOPBACK, stop, tcp_server

ROOT = Path(__file__).resolve().parent.parent
DCSAUDIT = [sys.executable, "-m", "dcsaudit.cli"]
SCHEMA = json.loads((ROOT / "schemas" / "report.schema.json").read_text())


class Silent:
    def __init__(self) -> None:
        self.port = 0
        self.connections = 0


@pytest.fixture
def silent() -> Iterator[Silent]:
    """Accepts every connection and never says anything (held until the test ends)."""
    peer = Silent()

    def hold(_conn: socket.socket) -> None:  # tcp_server keeps the socket open until the context ends
        peer.connections += 1

    with tcp_server(hold) as port:
        peer.port = port
        yield peer


def slow_config(tmp: Path, port: int) -> Path:
    """One AE on the silent port: identification, then an association audit that waits 30 s per answer."""
    cfg = tmp / "site.yaml"
    cfg.write_text(yaml.safe_dump({
        "deployment": "interrupt",
        "hosts": [{"address": LOOPBACK, "tcp_ports": [port]}],
        "application_entities": [{"ae_title": "PACS", "host": LOOPBACK, "port": port}],
        "scan": {"use_nmap": False, "udp": False, "tls_audit": False,
                 "timeouts": {"connect": 1, "read": 1, "tls_handshake": 1, "dicom": 30, "endpoint": 300}},
    }))
    return cfg


def wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(("sig", "formats"), [(signal.SIGTERM, None), (signal.SIGINT, None),
                                              (signal.SIGTERM, "json,md,html,pdf")])
def test_signal_mid_scan_writes_a_partial_report_and_exits_4(sig: signal.Signals, formats: str | None,
                                                             silent: Silent, tmp_path: Path) -> None:
    # Given a scan in progress (it has reached the silent acceptor and waits for an answer)
    out = tmp_path / "out"
    extra = ["--format", formats] if formats else []
    proc = subprocess.Popen([*DCSAUDIT, "scan", str(slow_config(tmp_path, silent.port)), "--out", str(out), "-q",
                             *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: silent.connections >= 1, 30), "the scan never reached the target"
        time.sleep(1.0)
        assert proc.poll() is None, "the scan ended before it could be interrupted"
        # When the scheduler stops it
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
        stopped_in = time.monotonic() - sent
    finally:
        stop(proc)
    # Then it stops within a few seconds with the documented status and a valid, marked report
    assert proc.returncode == 4, err.decode(errors="replace")
    assert stopped_in < 6.0
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["run"]["complete"] is False
    assert report["run"]["exit_status"] == 4
    assert report["run"]["interrupted"].startswith(f"{sig.name} received during ")
    assert (out / "annex.md").is_file() and (out / "annex.html").is_file()
    assert b"interrupted" in err and b"Traceback" not in err
    if formats and "pdf" in formats:  # ~20 s of layout would break the bound: said, not written
        assert not (out / "annex.pdf").exists() and b"annex.pdf not written" in err
    # Nothing absent from a partial report reads as a pass about the AE it did not finish
    ae = [f for f in report["findings"] if f["check_id"] == "dicom.ae_reachable"]
    assert all(f["status"] != "pass" for f in ae)


def test_sigterm_before_the_audit_exits_4_without_outputs(tmp_path: Path) -> None:
    # Given a scan stuck in preflight (a --targets FIFO nobody writes to)
    fifo = tmp_path / "targets"
    os.mkfifo(fifo)
    cfg = tmp_path / "site.yaml"
    cfg.write_text("deployment: t\nhosts: [{address: 127.0.0.1, tcp_ports: [1]}]\nscan: {use_nmap: false, udp: false}\n")
    proc = subprocess.Popen([*DCSAUDIT, "scan", str(cfg), "--targets", str(fifo), "--out", str(tmp_path / "o"), "-q"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)  # the interpreter starts and blocks opening the FIFO
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        stop(proc)
    # Then exit 4 (not 143), one clear line, and no outputs
    assert proc.returncode == 4, err
    assert b"interrupted" in err and b"Traceback" not in err
    assert not (tmp_path / "o" / "report.json").exists()


WRITER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from dcsaudit.models.core import Evidence
from dcsaudit.models.report import Report, RunInfo
from dcsaudit.output import write_outputs

out, generation, N = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
now = datetime.now(UTC)
evidence = [Evidence(id=f"ev-{i:06d}", probe="ports.connect", target=f"127.0.0.1:{i}/tcp", at=now, ok=True,
                     summary="x" * 200) for i in range(N)]
report = Report(deployment=f"generation {generation}", started_at=now, finished_at=now,
                run=RunInfo(tool_version="t", command="scan", policy="default"), evidence=evidence)
print("ready", flush=True)
while True:
    write_outputs(report, out)
    print("wrote", flush=True)
"""
N = 3000


def test_sigkill_mid_write_leaves_the_previous_report_or_the_new_one_never_a_truncated_one(tmp_path: Path) -> None:
    # Given a complete report from a first run, then runs rewriting it in a loop that are killed hard
    # at random moments (fixed seed), most of them in the middle of a write
    out = tmp_path / "out"
    rng = random.Random(12)
    seen: set[str] = set()
    for generation in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(generation), str(N)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            if generation == 0:
                assert proc.stdout.readline().strip() == b"wrote"
            time.sleep(rng.uniform(0.0, 0.8))
        finally:
            proc.kill()
            proc.wait(timeout=10)
        # Then report.json is always a complete report (the previous one or the new one), never truncated
        data = json.loads((out / "report.json").read_text())  # a truncated file would not parse
        assert len(data["evidence"]) == N
        seen.add(data["deployment"])
    assert len(seen) >= 2, "the kills never let a rewrite finish: the test saw only one generation"


def test_outputs_follow_the_umask(tmp_path: Path) -> None:
    # Given umask 022 and 027, When outputs are written, Then 0644 and 0640 (mkstemp alone gives 0600)
    code = ("import os,sys; os.umask(int(sys.argv[2], 8));"
            "from datetime import UTC, datetime; from pathlib import Path;"
            "from dcsaudit.models.report import Report, RunInfo; from dcsaudit.output import write_outputs;"
            "now = datetime.now(UTC);"
            "write_outputs(Report(deployment='d', started_at=now, finished_at=now,"
            " run=RunInfo(tool_version='t', command='scan', policy='p')), Path(sys.argv[1]))")
    for mask, mode in (("022", 0o644), ("027", 0o640)):
        out = tmp_path / mask
        subprocess.run([sys.executable, "-c", code, str(out), mask], cwd=ROOT, check=True, timeout=60)
        for name in ("report.json", "annex.md", "annex.html"):
            assert stat.S_IMODE((out / name).stat().st_mode) == mode, (mask, name)
        assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"
