"""SARIF 2.1.0, JUnit XML and CSV outputs (issue 13).

SARIF is validated against the OASIS SARIF 2.1.0 JSON schema shipped in tests/data (errata01, the
schema file as OASIS publishes it); JUnit is parsed as XML and checked against the JUnit report layout;
CSV is read back with the csv module.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema

from dcsaudit.checks import REGISTRY
from dcsaudit.export_ci import FINGERPRINT_KEY, to_csv, to_junit, to_sarif
from dcsaudit.models.core import Finding
from dcsaudit.models.report import Report, RunInfo
from dcsaudit.output import write_outputs

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-2.1.0.json").read_text())
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def finding(check: str, status: str, target: str, **kw: object) -> Finding:
    return Finding(check_id=check, title=f"title of {check}", status=status, severity=kw.pop("severity", "high"),  # type: ignore[arg-type]
                   target=target, summary=str(kw.pop("summary", "summary")), references=["PS3.15 B.12"], **kw)  # type: ignore[arg-type]


def sample(evidence: str = "ev-0001", at: datetime = T0) -> Report:
    return Report(
        deployment="site <A & B>", started_at=at, finished_at=at + timedelta(seconds=90),
        run=RunInfo(tool_version="0.1.0", command="scan", policy="default", exit_status=1),
        findings=[
            finding("inventory.plaintext_dicom", "fail", "10.0.0.5:104/tcp", gating=True, evidence=[evidence]),
            finding("tls.no_legacy_protocols", "fail", "10.0.0.5:2762/tcp", severity="medium", suppressed=True,
                    suppression="vendor fix in 5.2 (owner pacs-team, until 2027-03-31)"),
            finding("tls.audit_completed", "error", "10.0.0.5:2763/tcp", summary="=HYPERLINK(\"x\")"),
            finding("tls.weak_ciphers", "pass", "10.0.0.5:2762/tcp"),
            finding("tls.fallback_scsv", "not_applicable", "10.0.0.5:2762/tcp"),
            finding("suppressions.expired", "fail", "suppression dicom.any_calling_ae *", severity="medium"),
        ])


def test_sarif_validates_against_the_schema_with_one_rule_per_check_and_one_result_per_failure() -> None:
    sarif = json.loads(to_sarif(sample()))
    # Then it is valid SARIF 2.1.0
    jsonschema.validate(sarif, SCHEMA, cls=jsonschema.Draft4Validator)
    run = sarif["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    # And one rule per check id of the catalogue, plus the expired-suppression finding's
    assert [r["id"] for r in rules] == sorted([s.id for s in REGISTRY.all()] + ["suppressions.expired"])
    plain = next(r for r in rules if r["id"] == "inventory.plaintext_dicom")
    assert "PS3.15 B.12" in plain["help"]["text"] and plain["properties"]["references"]
    # And one result per failed or errored finding, the suppressed one marked accepted
    assert [(r["ruleId"], r["level"]) for r in run["results"]] == [
        ("inventory.plaintext_dicom", "error"), ("tls.no_legacy_protocols", "warning"),
        ("tls.audit_completed", "error"), ("suppressions.expired", "warning")]
    assert run["results"][1]["suppressions"][0]["justification"].startswith("vendor fix")
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"])
    # And the schema is strict enough to catch a mistake (the validation above is not vacuous)
    run["results"][0]["level"] = "fatal"
    assert not jsonschema.Draft4Validator(SCHEMA).is_valid(sarif)


def test_sarif_fingerprints_are_stable_across_runs() -> None:
    a = json.loads(to_sarif(sample("ev-0001", T0)))["runs"][0]["results"]
    b = json.loads(to_sarif(sample("ev-0999", T0 + timedelta(days=1))))["runs"][0]["results"]
    fa = [r["partialFingerprints"][FINGERPRINT_KEY] for r in a]
    assert fa == [r["partialFingerprints"][FINGERPRINT_KEY] for r in b]
    assert len(set(fa)) == len(fa)


def test_junit_has_one_testcase_per_finding_and_failures_for_fail_and_error() -> None:
    root = ET.fromstring(to_junit(sample()).encode())
    assert root.tag == "testsuites"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(sample().findings) == int(root.get("tests", "0"))
    assert len(root.findall("./testsuite/testcase/failure")) == 3 == int(root.get("failures", "0"))
    assert len(root.findall("./testsuite/testcase/error")) == 1 == int(root.get("errors", "0"))
    assert len(root.findall("./testsuite/testcase/skipped")) == 1
    for suite in root.findall("testsuite"):
        assert int(suite.get("tests", "-1")) == len(suite.findall("testcase"))


def test_csv_has_one_row_per_finding_and_defuses_formulas() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(sample()))))
    assert len(rows) == len(sample().findings)
    assert [r["status"] for r in rows] == ["fail", "fail", "error", "pass", "not_applicable", "fail"]
    assert rows[2]["summary"].startswith("'=")  # a hostile banner is never a spreadsheet formula
    assert rows[1]["suppressed"] == "true" and "pacs-team" in rows[1]["suppression"]


def test_write_outputs_writes_the_ci_files_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        paths = write_outputs(sample(), tmp_path, formats=("json", "sarif", "junit", "csv"))
    finally:
        os.umask(old)
    assert sorted(paths) == ["findings.csv", "report.json", "report.junit.xml", "report.sarif"]
    for p in paths.values():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    jsonschema.validate(json.loads(paths["report.sarif"].read_text()), SCHEMA, cls=jsonschema.Draft4Validator)
