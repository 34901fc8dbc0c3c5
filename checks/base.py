"""Plumbing for checks: a check is a small pure function over the collected audit data.

A check never does I/O: it reads what the probes collected. It is registered with a readable dotted id, a title, a
default severity and the standard sections it implements; it returns one Finding per target it judges.
Severity overrides and which checks gate the exit status come from a policy file in configs/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dcsaudit.models.audit import AuditTrail
from dcsaudit.models.core import Evidence, Finding, FindingStatus, Severity
from dcsaudit.models.dicom import ApplicationEntity, Initiator
from dcsaudit.models.endpoint import Endpoint

CHECK_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass(frozen=True)
class AuditData:
    """Everything probes collected; what checks and the annex builder read."""

    endpoints: list[Endpoint]
    evidence: list[Evidence]
    application_entities: list[ApplicationEntity] = field(default_factory=list)
    initiators: list[Initiator] = field(default_factory=list)
    audit_trail: AuditTrail | None = None
    declared: dict[str, dict[str, str]] = field(default_factory=dict)
    # The configured hosts (CIDR ranges and --targets expanded), and those whose name did not resolve
    # (kept only with --allow-unresolved): a host that answered nothing must never be absent, hence pass.
    hosts: list[str] = field(default_factory=list)
    unresolved_hosts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """What a check function yields; the registry turns it into a Finding."""

    status: FindingStatus
    target: str
    summary: str
    evidence: list[str] = field(default_factory=list)


CheckFn = Callable[[AuditData], Iterable[Verdict]]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    severity: Severity
    references: tuple[str, ...]
    fn: CheckFn

    def run(self, data: AuditData, severity: Severity | None = None, gating: bool = False) -> list[Finding]:
        sev = severity or self.severity
        try:
            verdicts = list(self.fn(data))
        except Exception as exc:  # a buggy check is an error result, not a crashed audit
            return [Finding(check_id=self.id, title=self.title, status="error", severity=sev, target="*",
                            summary=f"check raised {type(exc).__name__}: {exc}", references=list(self.references))]
        return [
            Finding(
                check_id=self.id, title=self.title, status=v.status, severity=sev, target=v.target,
                summary=v.summary, evidence=v.evidence, references=list(self.references),
                gating=gating and v.status in ("fail", "error"),
            )
            for v in verdicts
        ]


class Registry:
    def __init__(self) -> None:
        self._checks: dict[str, CheckSpec] = {}

    def check(self, id: str, title: str, severity: Severity, references: Iterable[str] = ()) -> Callable[[CheckFn], CheckFn]:
        if not CHECK_ID.match(id):
            raise ValueError(f"check id {id!r} is not a dotted lower-case name")

        def register(fn: CheckFn) -> CheckFn:
            if id in self._checks:
                raise ValueError(f"check id {id!r} registered twice")
            self._checks[id] = CheckSpec(id, title, severity, tuple(references), fn)
            return fn

        return register

    def all(self) -> list[CheckSpec]:
        return [self._checks[k] for k in sorted(self._checks)]

    def get(self, id: str) -> CheckSpec | None:
        return self._checks.get(id)


REGISTRY = Registry()
check = REGISTRY.check
