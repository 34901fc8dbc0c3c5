"""Drift between two real scans (issue 13), stored in SQLite and in a real PostgreSQL server.

Given a loopback deployment of one TLS port (openssl s_server) and one port that is closed, scanned once;
then the TLS server restarted on the same port without TLS 1.3 and a plaintext DICOM SCP (pynetdicom)
started on the closed port, scanned again: ``dcsaudit diff`` names exactly those changes and exits 1
(a newly exposed plaintext DICOM port is a regression). Scans are small: two ports, no nmap, no UDP,
no sslyze vulnerability tests, one-to-two-second timeouts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dcsaudit.cli import main
from dcsaudit.models.report import Report
from tests.peers.common import LOOPBACK, TestPKI, free_port, require_program, running
from tests.peers.postgres import PostgresServer, postgres_server

pytestmark = pytest.mark.peer("openssl")


@contextmanager
def tls_server(pki: TestPKI, port: int, *switches: str) -> Iterator[None]:
    exe = require_program("openssl")
    cmd = [exe, "s_server", "-accept", f"{LOOPBACK}:{port}", "-cert", str(pki.server_cert), "-key",
           str(pki.server_key), "-cert_chain", str(pki.server_chain), "-quiet", "-www", "-naccept", "100000",
           *switches]
    with running(cmd, port=port):
        yield


@contextmanager
def plaintext_scp(port: int) -> Iterator[None]:
    ae = AE(ae_title="DRIFTSCP")
    ae.add_supported_context(Verification)
    ae.acse_timeout = ae.network_timeout = 10
    server = ae.start_server((LOOPBACK, port), block=False)
    assert server is not None
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class TwoRuns:
    dir: Path
    tls_port: int
    new_port: int
    sqlite_url: str
    reports: tuple[Report, Report]


def _scan(config: Path, out: Path, store: str) -> int:
    return main(["scan", str(config), "--out", str(out), "--force", "-q", "--store", store])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> TwoRuns:
    d = tmp_path_factory.mktemp("drift")
    tls_port, new_port = free_port(), free_port()
    config = d / "site.yaml"
    config.write_text(textwrap.dedent(f"""\
        deployment: drift test site
        hosts:
          - address: 127.0.0.1
            tcp_ports: [{tls_port}, {new_port}]
        scan:
          use_nmap: false
          udp: false
          tls_audit: true
          timeouts: {{connect: 1, read: 2, tls_handshake: 2, dicom: 3}}
          tls: {{vulnerabilities: false, robot: false}}
        """))
    url = f"sqlite:///{d / 'history.sqlite'}"
    # Given run 1: TLS 1.2 and 1.3 on one port, nothing on the other
    with tls_server(pki, tls_port):
        rc1 = _scan(config, d / "run1", url)
    # And run 2: TLS 1.3 switched off, a plaintext DICOM SCP on the port that was closed
    with tls_server(pki, tls_port, "-no_tls1_3"), plaintext_scp(new_port):
        rc2 = _scan(config, d / "run2", url)
    assert rc1 in (0, 1) and rc2 in (0, 1)
    reports = tuple(Report.model_validate_json((d / f"run{i}" / "report.json").read_text()) for i in (1, 2))
    return TwoRuns(d, tls_port, new_port, url, reports)  # type: ignore[arg-type]


def _diff_json(store: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    rc = main(["diff", "--store", store, "--format", "json", *extra])
    return rc, json.loads(capsys.readouterr().out)


def _assert_exact_drift(data: dict[str, object], t: TwoRuns) -> None:
    changes = data["changes"]
    assert isinstance(changes, list)
    tls_ep, new_ep = f"127.0.0.1:{t.tls_port}/tcp", f"127.0.0.1:{t.new_port}/tcp"
    by = {(c["subject"], c["what"], json.dumps(c["before"]), json.dumps(c["after"])) for c in changes}
    # Then the new port is named opened, as plaintext DICOM (a regression), with its service
    assert (new_ep, "state", '"closed"', '"open"') in by
    assert (new_ep, "plaintext_dicom", "null", "true") in by or (new_ep, "plaintext_dicom", "false", "true") in by
    assert any(c["subject"] == new_ep and c["what"] == "plaintext_dicom" and c["regression"] for c in changes)
    assert any(c["subject"] == new_ep and c["what"] == "service" and c["after"] == "dicom" for c in changes)
    # And TLS 1.3 is named lost on the TLS port, with its suites
    assert (tls_ep, "tls.versions", '"TLSv1.3"', "null") in by
    assert any(c["subject"] == tls_ep and c["what"] == "tls.suites.TLSv1.3" and c["after"] is None for c in changes)
    # And nothing else changed on the TLS port: same certificate, same TLS 1.2 suites, same service
    others = [c for c in changes if c["subject"] == tls_ep and not str(c["what"]).startswith(
        ("tls.versions", "tls.suites.TLSv1.3", "tls.profile.", "tls.groups"))]
    assert others == [], others
    # And every change is on one of the two ports (the new port's AE, found by identification): nothing invented
    assert all(c["subject"] in (tls_ep, new_ep) or c["subject"].endswith(f"@127.0.0.1:{t.new_port}")
               for c in changes), changes
    assert data["regression"] is True
    findings = data["findings"]
    assert isinstance(findings, list)
    assert any(f["change"] == "new" and f["check_id"] == "inventory.plaintext_dicom" for f in findings)


def test_sqlite_store_diff_of_two_real_scans(two_runs: TwoRuns, capsys: pytest.CaptureFixture[str]) -> None:
    # When diffing the last two runs (the default) of the only deployment in the store
    rc, data = _diff_json(two_runs.sqlite_url, capsys)
    # Then the diff names exactly the changes and exits 1 (regression)
    assert rc == 1
    assert (data["run_a"], data["run_b"]) == (1, 2)
    _assert_exact_drift(data, two_runs)
    # And the text form says the same for a person
    main(["diff", "--store", two_runs.sqlite_url, "1", "2"])
    text = capsys.readouterr().out
    assert f"port opened: 127.0.0.1:{two_runs.new_port}/tcp" in text
    assert f"plaintext DICOM newly exposed on 127.0.0.1:{two_runs.new_port}/tcp" in text
    assert f"127.0.0.1:{two_runs.tls_port}/tcp: TLSv1.3 lost" in text
    assert text.rstrip().endswith("regression: yes")


def test_history_lists_both_runs(two_runs: TwoRuns, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["history", "--store", two_runs.sqlite_url, "--format", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in runs] == [1, 2]
    assert {r["deployment"] for r in runs} == {"drift test site"}
    for r, rep in zip(runs, two_runs.reports, strict=True):
        assert r["exit_status"] == rep.run.exit_status
        assert r["failed"] == sum(1 for f in rep.findings if f.status == "fail")
        assert r["passed"] == sum(1 for f in rep.findings if f.status == "pass")


def test_the_reverse_diff_is_no_regression(two_runs: TwoRuns, capsys: pytest.CaptureFixture[str]) -> None:
    # Run 2 -> run 1: the plaintext port closes and TLS 1.3 comes back: drift, but no regression
    rc, data = _diff_json(two_runs.sqlite_url, capsys, "2", "1")
    assert rc == 0 and data["regression"] is False
    assert any(c["what"] == "tls.versions" and c["after"] == "TLSv1.3" for c in data["changes"])  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def test_postgres_store_diff_of_two_real_scans(two_runs: TwoRuns, pg: PostgresServer,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from dcsaudit.history.commands import store_run

    # Given both runs stored in a fresh PostgreSQL database (the path scan --store takes)
    url = pg.new_database()
    for i, rep in enumerate(two_runs.reports, start=1):
        assert store_run(rep, url, two_runs.dir / f"run{i}", quiet=True)
    # When diffed from that store
    rc, data = _diff_json(url, capsys, "--deployment", "drift test site")
    # Then the same exact drift, and exit 1
    assert rc == 1
    _assert_exact_drift(data, two_runs)


_WRITER = """
import sys
from dcsaudit.history.store import open_store
from dcsaudit.models.report import Report
report = Report.model_validate_json(open(sys.argv[2]).read())
for i in range(int(sys.argv[3])):
    with open_store(sys.argv[1]) as store:
        store.save(report.model_copy(update={"deployment": sys.argv[4]}))
"""


def test_two_scanners_write_to_one_postgres_store_at_once(two_runs: TwoRuns, pg: PostgresServer) -> None:
    # Given a fresh database (so both scanners also race to create the schema)
    url = pg.new_database()
    report = two_runs.dir / "run2" / "report.json"
    # When two scanner processes store five runs each at the same time
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, url, str(report), "5", f"segment-{n}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for n in ("a", "b")]
    outs = [p.communicate(timeout=90)[0].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # Then all ten runs landed, five per scanner, each with all its findings
    from dcsaudit.history.store import open_store

    with open_store(url) as store:
        runs = store.runs()
        assert sorted(r.deployment for r in runs).count("segment-a") == 5
        assert sorted(r.deployment for r in runs).count("segment-b") == 5
        expected = len(json.loads(report.read_text())["findings"])
        assert all(len(store.snapshot(r.id).findings) == expected for r in runs)
