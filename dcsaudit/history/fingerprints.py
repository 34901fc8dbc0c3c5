"""Stable keys for what a run observed, so the same fact has the same key in every run.

Evidence ids change every run; these keys do not. A key is derived only from what identifies the thing
(deployment, host, port, protocol, AE title, check id or fact path), never from a time or an id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcsaudit.models.core import Finding
from dcsaudit.models.dicom import ApplicationEntity
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.report import Report


def fingerprint(*parts: str) -> str:
    """40 hex digits of SHA-256 over the parts (unit separator between them, so ("a b", "c") != ("a", "b c"))."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:40]


def finding_fingerprint(deployment: str, finding: Finding) -> str:
    """Deployment + check id + target (the target names host, port and AE where the check has them)."""
    return fingerprint("finding", deployment, finding.check_id, finding.target)


def endpoint_subject(e: Endpoint) -> str:
    return e.key  # host:port/protocol


def ae_subject(ae: ApplicationEntity) -> str:
    return f"{ae.ae_title}@{ae.host}:{ae.port}"


@dataclass(frozen=True)
class Fact:
    """One observed value: ``subject`` (an endpoint key or AE@host:port) and a dotted ``path``."""

    subject: str
    path: str
    value: Any  # JSON-serialisable: None, bool, int, str or a sorted list of str

    def key(self, deployment: str) -> str:
        return fingerprint("fact", deployment, self.subject, self.path)

    def value_json(self) -> str:
        return json.dumps(self.value, sort_keys=True, separators=(",", ":"))


def endpoint_facts(e: Endpoint) -> list[Fact]:
    s = endpoint_subject(e)
    out = [Fact(s, "state", e.state), Fact(s, "service", e.service), Fact(s, "plaintext_dicom", e.plaintext_dicom)]
    tls = e.tls
    # A TLS audit that failed established nothing: no facts, so a failed run never reads as "versions lost".
    if tls is None or tls.error:
        return out
    out.append(Fact(s, "tls.versions", tls.accepted_versions()))
    for version, suites in sorted(tls.protocols.items()):
        if suites:
            out.append(Fact(s, f"tls.suites.{version}", sorted(suites)))
    for name, verdict in sorted(tls.profiles.items()):
        out.append(Fact(s, f"tls.profile.{name}", verdict.verdict))
    out.append(Fact(s, "tls.client_certificate", tls.client_certificate))
    cert = tls.certificate
    if cert is not None:
        # days_to_expiry changes every day by itself: the diff derives it from not_after instead.
        out += [Fact(s, "tls.cert.sha256", cert.sha256), Fact(s, "tls.cert.subject", cert.subject),
                Fact(s, "tls.cert.issuer", cert.issuer), Fact(s, "tls.cert.not_after", cert.not_after),
                Fact(s, "tls.cert.key", f"{cert.key_type}-{cert.key_bits}"),
                Fact(s, "tls.cert.chain_valid", cert.chain_valid)]
    return out


def ae_facts(ae: ApplicationEntity) -> list[Fact]:
    s = ae_subject(ae)
    if ae.error:  # not audited: nothing established
        return [Fact(s, "ae.audited", False)]
    return [
        Fact(s, "ae.audited", True),
        Fact(s, "ae.tls", ae.tls),
        Fact(s, "ae.verification", ae.verification),
        Fact(s, "ae.accepts_any_called_ae", ae.accepts_any_called_ae),
        Fact(s, "ae.accepts_any_calling_ae", ae.accepts_any_calling_ae),
        Fact(s, "ae.user_identity_enforced", ae.user_identity.enforced),
        Fact(s, "ae.unauthenticated_query_retrieve", sorted(ae.unauthenticated_query_retrieve)),
        Fact(s, "ae.implementation_class_uid", ae.implementation_class_uid),
        Fact(s, "ae.implementation_version_name", ae.implementation_version_name),
    ]


def report_facts(report: Report) -> list[Fact]:
    facts: list[Fact] = []
    for e in report.endpoints:
        facts += endpoint_facts(e)
    for ae in report.application_entities:
        facts += ae_facts(ae)
    return facts


def run_rows(report: Report, out_dir: Path | None = None) -> dict[str, Any]:
    """The rows one run adds (``run``, ``endpoints``, ``facts``, ``findings``; JSON-safe, times as ISO 8601),
    computed where the report is: the history worker stores them without importing the report's models."""
    dep = report.deployment
    counts = {s: 0 for s in ("pass", "fail", "error", "not_applicable")}
    for f in report.findings:
        counts[f.status] += 1
    run = dict(
        deployment=dep, started_at=report.started_at.isoformat(), finished_at=report.finished_at.isoformat(),
        command=report.run.command, policy=report.run.policy,
        tool_version=report.run.tool_version, exit_status=report.run.exit_status, complete=report.run.complete,
        endpoints=len(report.endpoints), passed=counts["pass"], failed=counts["fail"], errors=counts["error"],
        not_applicable=counts["not_applicable"], gating=sum(1 for f in report.findings if f.gating),
        suppressed=sum(1 for f in report.findings if f.suppressed),
        out_dir=str(out_dir) if out_dir is not None else None)
    return {
        "run": run,
        "endpoints": [dict(fingerprint=fingerprint("endpoint", dep, endpoint_subject(e)), host=e.host, port=e.port,
                           protocol=e.protocol, state=e.state, service=e.service) for e in report.endpoints],
        "facts": [dict(fingerprint=fact.key(dep), subject=fact.subject, path=fact.path, value=fact.value_json())
                  for fact in report_facts(report)],
        "findings": [dict(fingerprint=finding_fingerprint(dep, f), check_id=f.check_id, target=f.target,
                          status=f.status, severity=f.severity, gating=f.gating, suppressed=f.suppressed,
                          title=f.title, summary=f.summary) for f in report.findings],
    }
