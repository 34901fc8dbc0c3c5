"""End to end: the built-in demo through the real pipeline, its outputs, and the exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from dcsaudit.cli import main
from dcsaudit.output import report_schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json"


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("demo")
    status = main(["demo", "--out", str(out), "-q"])
    return status, out


def test_demo_completes_with_policy_verdict(demo_out: tuple[int, Path]) -> None:
    status, out = demo_out
    # The demo has a plaintext DICOM port on purpose: the default policy fails it (exit 1), never 2 or 3.
    assert status == 1
    for name in ("report.json", "annex.md", "annex.html"):
        assert (out / name).stat().st_size > 0


def test_demo_report_matches_published_schema(demo_out: tuple[int, Path]) -> None:
    _, out = demo_out
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, json.loads(SCHEMA_FILE.read_text()))
    for key in ("schema_version", "deployment", "started_at", "finished_at", "endpoints", "findings", "annex"):
        assert key in report
    for f in report["findings"]:
        assert f["status"] in ("pass", "fail", "error", "not_applicable")
        assert {"check_id", "severity", "target", "summary", "evidence"} <= f.keys()


def test_published_schema_is_current() -> None:
    # The committed schema must be regenerated (dcsaudit schema > schemas/report.schema.json) when models change.
    assert json.loads(SCHEMA_FILE.read_text()) == report_schema()


def test_demo_port_table_lists_demo_ports_with_services(demo_out: tuple[int, Path]) -> None:
    _, out = demo_out
    report = json.loads((out / "report.json").read_text())
    services = {(e["port"], e["service"]) for e in report["endpoints"]}
    assert {s for _, s in services} == {"dicom", "dicom-tls"}
    [section] = [s for s in report["annex"]["sections"] if s["id"] == "N.8.3"]
    [table] = section["tables"]
    rows = {(r[1]["value"], r[4]["value"]) for r in table["rows"]}
    expected = {(str(p), "DICOM (DIMSE, no TLS)" if s == "dicom" else "DICOM over TLS") for p, s in services}
    assert rows == expected
    assert all(r[4]["provenance"] == "verified" and r[4]["evidence"] for r in table["rows"])
    html = (out / "annex.html").read_text()
    for port, _ in services:
        assert f">{port}" in html


def test_unwritable_output_exits_3(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("deployment: t\nhosts: [{address: 127.0.0.1, tcp_ports: [1]}]\nscan: {use_nmap: false, udp: false}\n")
    assert main(["scan", str(cfg), "--out", str(blocker / "sub"), "-q"]) == 3


def test_scan_of_closed_ports_passes_default_policy(tmp_path: Path) -> None:
    # Given a host where nothing listens on the scanned port, When scanned, Then the audit completes (exit 0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("deployment: t\nhosts: [{address: 127.0.0.1, tcp_ports: [1]}]\nscan: {udp: false}\n")
    assert main(["scan", str(cfg), "--out", str(tmp_path / "o"), "-q"]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["endpoints"][0]["state"] == "closed"


def test_version_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
