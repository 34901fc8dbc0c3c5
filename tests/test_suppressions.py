"""Suppressions with accountability, --fail-on and --exit-zero (issue 13).

The end-to-end cases scan a real plaintext DICOM SCP (pynetdicom) on loopback: its port fails
inventory.plaintext_dicom (high, gating under the default policy).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from dcsaudit.cli import main
from dcsaudit.config import ConfigError
from dcsaudit.models.report import Report
from dcsaudit.suppressions import EXPIRED_CHECK_ID, load_suppressions
from tests.peers.common import free_port
from tests.peers.dicom_peers import pynetdicom_scp

TODAY = date.today()


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_unknown_check_id_is_a_config_error_naming_the_entry(tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", """\
        suppressions:
          - {check: tls.no_legacy_protocols, reason: accepted risk, owner: it, expires: 2099-01-01}
          - {check: tls.no_legacy_protocol, reason: accepted risk, owner: it, expires: 2099-01-01}
        """)
    with pytest.raises(ConfigError, match=r"suppressions\[1\]\.check: unknown check id 'tls.no_legacy_protocol'"):
        load_suppressions(f)


@pytest.mark.parametrize("entry, problem", [
    ("{check: tls.weak_ciphers, owner: it, expires: 2099-01-01}", "reason"),
    ("{check: tls.weak_ciphers, reason: accepted risk, expires: 2099-01-01}", "owner"),
    ("{check: tls.weak_ciphers, reason: accepted risk, owner: it}", "expires"),
    ("{check: tls.weak_ciphers, reason: accepted risk, owner: '  ', expires: 2099-01-01}", "owner"),
    ("{check: tls.weak_ciphers, reason: accepted risk, owner: it, expires: someday}", "expires"),
])
def test_every_entry_needs_reason_owner_and_expiry(tmp_path: Path, entry: str, problem: str) -> None:
    f = write(tmp_path / "s.yaml", f"suppressions:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=problem):
        load_suppressions(f)


@pytest.fixture(scope="module")
def scp_port() -> Iterator[int]:
    with pynetdicom_scp("PLAINSCP", acse_timeout=10, network_timeout=10) as port:
        yield port


def config(tmp_path: Path, port: int) -> Path:
    return write(tmp_path / "site.yaml", f"""\
        deployment: suppression site
        hosts:
          - address: 127.0.0.1
            tcp_ports: [{port}]
        scan:
          use_nmap: false
          udp: false
          tls_audit: false
          timeouts: {{connect: 1, read: 2, tls_handshake: 2, dicom: 3}}
        """)


def test_unknown_check_id_exits_2_before_any_packet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path / "s.yaml", "- {check: no.such_check, reason: because, owner: it, expires: 2099-01-01}\n")
    out = tmp_path / "out"
    assert main(["scan", str(config(tmp_path, free_port())), "--suppressions", str(f), "--out", str(out),
                 "--store", "none"]) == 2
    assert "unknown check id 'no.such_check'" in capsys.readouterr().err
    assert not out.exists()


def test_active_suppression_keeps_the_finding_and_an_expired_one_is_a_finding(
        tmp_path: Path, scp_port: int) -> None:
    # Given an active suppression of the plaintext finding and an expired one of another check
    f = write(tmp_path / "s.yaml", f"""\
        suppressions:
          - check: inventory.plaintext_dicom
            target: "127.0.0.1:{scp_port}/*"
            reason: modality replaced in Q1 (CHG-1234)
            owner: pacs-team@hospital.example
            expires: {TODAY + timedelta(days=30)}
          - check: dicom.any_calling_ae
            target: "*"
            reason: temporary while the worklist migrates
            owner: ris-team@hospital.example
            expires: {TODAY - timedelta(days=1)}
        """)
    out = tmp_path / "out"
    # When scanned
    rc = main(["scan", str(config(tmp_path, scp_port)), "--suppressions", str(f), "--out", str(out), "-q",
               "--store", "none"])
    report = Report.model_validate_json((out / "report.json").read_text())
    # Then the plaintext finding is still in the report, failed, suppressed with the entry, not gating
    [plain] = [x for x in report.findings if x.check_id == "inventory.plaintext_dicom"]
    assert (plain.status, plain.suppressed, plain.gating) == ("fail", True, False)
    assert plain.suppression is not None and "pacs-team@hospital.example" in plain.suppression
    # And the expired entry is a failed finding of its own, and covers nothing
    [expired] = [x for x in report.findings if x.check_id == EXPIRED_CHECK_ID]
    assert expired.status == "fail" and "ris-team@hospital.example" in expired.summary
    assert not any(x.suppressed for x in report.findings if x.check_id == "dicom.any_calling_ae")
    # And with its only gating finding suppressed the run passes the default policy
    assert not any(x.gating for x in report.findings)
    assert rc == 0 == report.run.exit_status


def test_without_suppression_the_plaintext_port_gates_and_fail_on_and_exit_zero(
        tmp_path: Path, scp_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, scp_port)
    # When scanned with --fail-on medium and --exit-zero
    rc = main(["scan", str(cfg), "--out", str(tmp_path / "o"), "--fail-on", "medium", "--exit-zero", "--store",
               "none", "--format", "json,sarif,junit,csv"])
    report = Report.model_validate_json((tmp_path / "o" / "report.json").read_text())
    # Then medium failures gate too, the report says the policy failed, yet the process exits 0
    gating = {x.check_id for x in report.findings if x.gating}
    assert "inventory.plaintext_dicom" in gating
    assert any(x.severity == "medium" for x in report.findings if x.gating)
    assert report.run.exit_status == 1 and rc == 0
    # And the CI formats asked for are written beside report.json, one CSV row per finding
    assert {p.name for p in (tmp_path / "o").iterdir()} >= {"report.json", "report.sarif", "report.junit.xml",
                                                           "findings.csv"}
    assert len((tmp_path / "o" / "findings.csv").read_text().splitlines()) == len(report.findings) + 1
    # And the failed gating checks are listed on stderr
    err = capsys.readouterr().err
    assert f"gating inventory.plaintext_dicom: 127.0.0.1:{scp_port}/tcp" in err
