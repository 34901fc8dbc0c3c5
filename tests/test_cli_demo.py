"""End to end: the built-in demo through the real pipeline, its outputs, and the exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from dcsaudit.annex import outline
from dcsaudit.cli import main
from dcsaudit.models.report import Report
from dcsaudit.output import report_schema
from tests.annex_invariants import assert_annex_honest

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


def test_unwritable_output_is_a_config_error_before_the_scan(tmp_path: Path) -> None:
    # Preflight (issue 12): an --out that cannot be written is found before any packet, exit 2.
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("deployment: t\nhosts: [{address: 127.0.0.1, tcp_ports: [1]}]\nscan: {use_nmap: false, udp: false}\n")
    assert main(["scan", str(cfg), "--out", str(blocker / "sub"), "-q"]) == 2


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


def test_demo_annex_says_what_the_demo_product_does(demo_out: tuple[int, Path]) -> None:
    # The demo PACS (dcsaudit/demo.py) checks a type 2 passcode when one is sent, refuses every other
    # identity type, accepts associations without identity and allows 8 associations.
    _, out = demo_out
    report = json.loads((out / "report.json").read_text())
    [tls_ae] = [a for a in report["application_entities"] if a["tls"]]
    [plain_ae] = [a for a in report["application_entities"] if not a["tls"]]
    classes = {t: r["classification"] for t, r in tls_ae["user_identity"]["types"].items()}
    # Then over TLS: type 2 supported, type 1 refused even with the configured user name, 3-5 undetermined
    assert classes == {"1": "refused", "2": "supported", "3": "undetermined", "4": "undetermined",
                       "5": "undetermined"}
    # And without TLS no passcode was sent
    assert plain_ae["user_identity"]["types"]["2"]["classification"] == "not_tested"
    for ae in (tls_ae, plain_ae):
        assert ae["user_identity"]["enforced"] is False
        assert ae["max_associations"] == 8 and ae["verification"] is True
    tables = {t["id"]: t for s in report["annex"]["sections"] for t in s["tables"]}
    n82 = {r[0]["value"]: r[2] for r in tables["N.8-2"]["rows"]}
    assert (n82["User Identity Plus Passcode Association"]["value"],
            n82["User Identity Plus Passcode Association"]["provenance"]) == ("Y", "verified")
    for row in ("Basic User Identity Association", "Kerberos Identity Negotiation Association",
                "Generic SAML Assertion Identity Negotiation Association"):
        assert n82[row]["value"] == "" and n82[row]["provenance"] == "not_observed" and n82[row]["note"]
    assert "refused even with the configured credentials" in n82["Basic User Identity Association"]["note"]
    n89 = tables["N.8-9"]["rows"][0]
    assert (n89[1]["value"], n89[2]["value"]) == ("Y", "2")
    assert all("identity not required" in n for n in tables["N.8-9"]["notes"])
    # And the DIMSE timeout row is not filled with the idle timer, which has its own row naming the AE
    n61 = {r[0]["value"]: r[2] for r in tables["N.6-1"]["rows"]}
    assert n61["General DIMSE level timeout Values"]["value"] == ""
    idle = next(v for k, v in n61.items() if k.startswith("Idle association timeout"))
    assert idle["provenance"] == "verified" and "DEMO-PACS@127.0.0.1:" in idle["value"]
    by_id = {e["id"]: e for e in report["evidence"]}
    assert all(by_id[i]["probe"] == "dicom.timers" for i in idle["evidence"])


def test_annex_md_shows_cell_notes_like_the_html(demo_out: tuple[int, Path]) -> None:
    # A verified cell's note (here: the implementation recognised from the UID root) is in both renderings
    _, out = demo_out
    assert "recognised as pynetdicom" in (out / "annex.html").read_text()
    assert "recognised as pynetdicom" in (out / "annex.md").read_text()


def test_n8_2_rows_in_the_standards_order(demo_out: tuple[int, Path]) -> None:
    # PS3.2 2024d Table N.8-2: storage secure use, audit trail format, SYSLOG-TLS, SYSLOG-UDP, then the four
    # User Identity profiles (B.4-B.7).
    _, out = demo_out
    report = json.loads((out / "report.json").read_text())
    [n82] = [t for s in report["annex"]["sections"] for t in s["tables"] if t["id"] == "N.8-2"]
    labels = [r[0]["value"] for r in n82["rows"]]
    identity = ["Basic User Identity Association", "User Identity Plus Passcode Association",
                "Kerberos Identity Negotiation Association", "Generic SAML Assertion Identity Negotiation Association"]
    assert labels[-4:] == identity
    audit = [x for x in labels if "Audit Trail" in x]
    assert audit and all(labels.index(x) < labels.index(identity[0]) for x in audit)


def test_demo_annex_cells_keep_the_mark_and_evidence_rules(demo_out: tuple[int, Path]) -> None:
    _, out = demo_out
    report = Report.model_validate_json((out / "report.json").read_text())
    assert_annex_honest(report)


def test_demo_annex_has_every_section_and_table_of_annex_n_in_order(demo_out: tuple[int, Path]) -> None:
    _, out = demo_out
    report = Report.model_validate_json((out / "report.json").read_text())
    got = []
    for s in report.annex.sections:
        got.append(s.id)
        got.extend(dict.fromkeys(t.id for t in s.tables if t.numbered))
    expected = [e.id for e in outline.entries()]
    assert got == expected
    [ports] = [t for s in report.annex.sections if s.id == "N.8.3" for t in s.tables]
    assert not ports.numbered, "the port table sits under N.8.3 without a table number of its own"
    md = (out / "annex.md").read_text()
    positions = [md.index(f"Table {i}. ") for i in outline.table_ids()]
    assert positions == sorted(positions)
