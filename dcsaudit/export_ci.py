"""Outputs for schedulers and CI: SARIF 2.1.0 (``report.sarif``), JUnit XML (``report.junit.xml``) and
CSV (``findings.csv``), chosen with ``--format`` (the writers are registered in ``dcsaudit.export``).

SARIF (OASIS SARIF 2.1.0): one rule per check id, with its title, help text and the PS3.x / RFC sections
the check cites; one result per failed or errored finding, with a ``partialFingerprints`` entry that is the
same in every run (``dcsaudit.history.fingerprints``), so code-scanning dashboards track a finding across
nightly runs. A network target has no source file: results carry a logical location (host:port, AE).
JUnit: one testcase per finding (suite = check id); fail -> <failure>, error -> <error>,
not_applicable -> <skipped>. CSV: one row per finding.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from xml.etree import ElementTree as ET

from dcsaudit.history.fingerprints import finding_fingerprint
from dcsaudit.models.core import Finding
from dcsaudit.models.report import Report

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT_KEY = "dcsauditFinding/v1"
LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
CSV_COLUMNS = ("check_id", "title", "status", "severity", "gating", "suppressed", "target", "summary",
               "references", "evidence", "suppression", "fingerprint")


def _help_texts() -> dict[str, dict[str, Any]]:
    try:
        from dcsaudit.export.remediation import remediation

        return remediation()
    except (ImportError, OSError, KeyError, TypeError, ValueError):  # remediation data is optional here
        return {}


def _rules(report: Report) -> list[dict[str, Any]]:
    from dcsaudit.checks import REGISTRY
    from dcsaudit.suppressions import SYNTHETIC_CHECKS

    help_texts = _help_texts()
    specs: dict[str, tuple[str, str, list[str], str]] = {
        s.id: (s.title, s.severity, list(s.references), (s.fn.__doc__ or "").strip()) for s in REGISTRY.all()}
    for f in report.findings:  # checks that are not in the catalogue (expired suppressions)
        if f.check_id not in specs:
            title, sev = SYNTHETIC_CHECKS.get(f.check_id, (f.title, f.severity))
            specs[f.check_id] = (title, sev, list(f.references), "")
    rules = []
    for check_id in sorted(specs):
        title, severity, refs, doc = specs[check_id]
        fix = help_texts.get(check_id, {})
        refs = refs + [r for r in fix.get("references", []) if r not in refs]
        text = " ".join(p for p in (doc, str(fix.get("text", ""))) if p) or title
        ref_line = f"References: {'; '.join(refs)}." if refs else ""
        rules.append({
            "id": check_id,
            "name": "".join(w.capitalize() for w in check_id.replace(".", "_").split("_")),
            "shortDescription": {"text": title},
            "fullDescription": {"text": text},
            "help": {"text": f"{text}\n{ref_line}".strip(),
                     "markdown": f"**{title}**\n\n{text}\n\n{ref_line}".strip()},
            "defaultConfiguration": {"level": LEVEL[severity]},
            "properties": {"references": refs, "severity": severity, "tags": ["security", "dicom"]},
        })
    return rules


def to_sarif(report: Report) -> str:
    rules = _rules(report)
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = []
    for f in report.findings:
        if f.status not in ("fail", "error"):
            continue
        result: dict[str, Any] = {
            "ruleId": f.check_id,
            "ruleIndex": index[f.check_id],
            "level": LEVEL[f.severity] if f.status == "fail" else "error",
            "kind": "fail",
            "message": {"text": f"{f.target}: {f.summary}" + (" (the check could not run)" if f.status == "error"
                                                               else "")},
            "locations": [{"logicalLocations": [{"name": f.target, "fullyQualifiedName":
                                                 f"{report.deployment}/{f.target}", "kind": "resource"}]}],
            "partialFingerprints": {FINGERPRINT_KEY: finding_fingerprint(report.deployment, f)},
            "properties": {"status": f.status, "severity": f.severity, "gating": f.gating,
                           "evidence": list(f.evidence)},
        }
        if f.suppressed:
            result["suppressions"] = [{"kind": "external", "status": "accepted",
                                       "justification": f.suppression or "suppressed"}]
        results.append(result)
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "dcsaudit", "version": report.run.tool_version,
                                "semanticVersion": report.run.tool_version, "rules": rules}},
            "automationDetails": {"id": f"dcsaudit/{report.deployment}/{report.started_at.isoformat()}"},
            "invocations": [{
                "executionSuccessful": report.run.complete,
                "startTimeUtc": report.started_at.isoformat(),
                "endTimeUtc": report.finished_at.isoformat(),
                **({"exitCode": report.run.exit_status} if report.run.exit_status is not None else {}),
                "properties": {"command": report.run.command, "policy": report.run.policy},
            }],
            "results": results,
            "properties": {"deployment": report.deployment},
        }],
    }
    return json.dumps(sarif, indent=2, ensure_ascii=False) + "\n"


def _case_text(f: Finding) -> str:
    lines = [f.summary, f"severity: {f.severity}; gating: {'yes' if f.gating else 'no'}"]
    if f.suppressed:
        lines.append(f"suppressed: {f.suppression}")
    if f.references:
        lines.append("references: " + "; ".join(f.references))
    return "\n".join(lines)


def to_junit(report: Report) -> str:
    by_check: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_check.setdefault(f.check_id, []).append(f)
    total = len(report.findings)
    count = {s: sum(1 for f in report.findings if f.status == s) for s in ("fail", "error", "not_applicable")}
    seconds = f"{max((report.finished_at - report.started_at).total_seconds(), 0.0):.3f}"
    root = ET.Element("testsuites", name=f"dcsaudit {report.deployment}", tests=str(total),
                      failures=str(count["fail"]), errors=str(count["error"]), skipped=str(count["not_applicable"]),
                      time=seconds)
    for check_id in sorted(by_check):
        cases = by_check[check_id]
        suite = ET.SubElement(root, "testsuite", name=check_id, tests=str(len(cases)),
                              failures=str(sum(1 for f in cases if f.status == "fail")),
                              errors=str(sum(1 for f in cases if f.status == "error")),
                              skipped=str(sum(1 for f in cases if f.status == "not_applicable")),
                              timestamp=report.started_at.isoformat(), time="0")
        for f in cases:
            case = ET.SubElement(suite, "testcase", classname=check_id, name=f.target, time="0")
            message = f"[{f.severity}{', gating' if f.gating else ''}{', suppressed' if f.suppressed else ''}] " \
                      f"{f.title}"
            if f.status == "fail":
                ET.SubElement(case, "failure", message=message, type=f.severity).text = _case_text(f)
            elif f.status == "error":
                ET.SubElement(case, "error", message=message, type="check_error").text = _case_text(f)
            elif f.status == "not_applicable":
                ET.SubElement(case, "skipped", message=f.summary)
            else:
                ET.SubElement(case, "system-out").text = f.summary
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")  # RFC 4180 line endings
    w.writerow(CSV_COLUMNS)
    for f in report.findings:
        w.writerow([f.check_id, f.title, f.status, f.severity, str(f.gating).lower(), str(f.suppressed).lower(),
                    f.target, _no_formula(f.summary), "; ".join(f.references), " ".join(f.evidence),
                    f.suppression or "", finding_fingerprint(report.deployment, f)])
    return buf.getvalue()


def _no_formula(text: str) -> str:
    """A summary quoting a hostile banner must not become a spreadsheet formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --format name -> (file name, writer); registered in dcsaudit.export.FORMATS / RENDERERS.
CI_FORMATS: dict[str, tuple[str, Any]] = {
    "sarif": ("report.sarif", to_sarif),
    "junit": ("report.junit.xml", to_junit),
    "csv": ("findings.csv", to_csv),
}
