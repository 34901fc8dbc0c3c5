"""Suppressions with accountability (``--suppressions FILE``).

Each entry names a check id, a target pattern, a reason, an owner and an expiry date. A failed finding an
active entry covers stays in the report, marked ``suppressed`` with the entry, and never gates. An entry past
its expiry covers nothing and is itself a failed finding (``suppressions.expired``): an accepted risk must
be accepted again, by someone, on a date. An unknown check id is a config error (exit 2), found before any
packet is sent: a misspelt id would otherwise silently suppress nothing.

    suppressions:
      - check: tls.no_legacy_protocols
        target: "10.1.2.3:104/*"        # fnmatch pattern over the finding's target; default "*"
        reason: "modality vendor ships the fix in release 5.2 (ticket CHG-1234)"
        owner: "pacs-team@hospital.example"
        expires: 2027-03-31
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from fnmatch import fnmatchcase
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dcsaudit.config import ConfigError, did_you_mean, first_error, yaml_problem
from dcsaudit.models.core import Finding, Severity
from dcsaudit.models.report import Report
from dcsaudit.policy import SEVERITY_ORDER, Policy

EXPIRED_CHECK_ID = "suppressions.expired"
EXPIRED_TITLE = "A suppression has expired"
EXPIRED_SEVERITY: Severity = "medium"
SYNTHETIC_CHECKS = {EXPIRED_CHECK_ID: (EXPIRED_TITLE, EXPIRED_SEVERITY)}


class Suppression(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    check: str = Field(description="check id the entry covers")
    target: str = Field(default="*", description="fnmatch pattern over the finding's target")
    reason: str = Field(min_length=3, description="why the risk is accepted")
    owner: str = Field(min_length=1, description="who accepted it and answers for it")
    expires: date = Field(description="last day the entry covers findings (YYYY-MM-DD)")

    @field_validator("reason", "owner")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()

    def expired(self, today: date) -> bool:
        return today > self.expires

    def covers(self, f: Finding) -> bool:
        return f.check_id == self.check and fnmatchcase(f.target, self.target)

    def describe(self) -> str:
        return f"{self.reason} (owner {self.owner}, until {self.expires.isoformat()})"


class SuppressionFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    suppressions: list[Suppression] = Field(default_factory=list)


def load_suppressions(path: Path, known_checks: Iterable[str] | None = None) -> list[Suppression]:
    """Read and validate the file; an unknown check id is a ConfigError naming the entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--suppressions {path}: {why}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--suppressions {path}: {yaml_problem(exc)}") from None
    if isinstance(data, list):
        data = {"suppressions": data}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"--suppressions {path}: the top level must be a mapping with a 'suppressions' list")
    try:
        entries = SuppressionFile.model_validate(data).suppressions
    except ValidationError as exc:
        raise ConfigError(f"--suppressions {path}: {first_error(exc, SuppressionFile)}") from None
    if known_checks is None:
        from dcsaudit.checks import REGISTRY

        known_checks = [spec.id for spec in REGISTRY.all()]
    known = sorted(known_checks)
    for i, entry in enumerate(entries):
        if entry.check not in known:
            raise ConfigError(f"--suppressions {path}: suppressions[{i}].check: unknown check id "
                              f"{entry.check!r}{did_you_mean(entry.check, known)}")
    return entries


def apply_suppressions(report: Report, policy: Policy, entries: list[Suppression],
                       today: date | None = None) -> Report:
    """Mark covered failed findings suppressed (not gating); add one finding per expired entry."""
    today = today or datetime.now(UTC).date()
    active = [e for e in entries if not e.expired(today)]
    findings: list[Finding] = []
    for f in report.findings:
        entry = next((e for e in active if e.covers(f)), None) if f.status in ("fail", "error") else None
        if entry is not None:
            f = f.model_copy(update={"suppressed": True, "suppression": entry.describe(), "gating": False})
        findings.append(f)
    for e in entries:
        if e.expired(today):
            findings.append(Finding(
                check_id=EXPIRED_CHECK_ID, title=EXPIRED_TITLE, status="fail", severity=EXPIRED_SEVERITY,
                target=f"suppression {e.check} {e.target}",
                summary=f"the suppression of {e.check} on {e.target} expired on {e.expires.isoformat()} "
                        f"(owner {e.owner}; reason: {e.reason}); it covers nothing until renewed",
                gating=policy.gates(EXPIRED_CHECK_ID, EXPIRED_SEVERITY)))
    return report.model_copy(update={"findings": findings})


def apply_fail_on(report: Report, policy: Policy, fail_on: Severity) -> tuple[Report, Policy]:
    """``--fail-on SEVERITY``: a failed finding at or above it gates (the policy's gate/ignore lists still
    apply). Gating is recomputed from each finding's (policy-adjusted) severity."""
    policy = policy.model_copy(update={"fail_at_severity": fail_on})
    findings = [f.model_copy(update={"gating": f.status in ("fail", "error") and not f.suppressed
                                     and policy.gates(f.check_id, f.severity)}) for f in report.findings]
    return report.model_copy(update={"findings": findings}), policy


__all__ = ["EXPIRED_CHECK_ID", "SEVERITY_ORDER", "Suppression", "apply_fail_on", "apply_suppressions",
           "load_suppressions"]
