"""The whole audit report: the single source for report.json, the annex and the JSON Schema."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from dcsaudit.models.audit import AuditTrail
from dcsaudit.models.core import Annex, Evidence, Finding, Model
from dcsaudit.models.dicom import ApplicationEntity, Initiator
from dcsaudit.models.endpoint import Endpoint

SCHEMA_VERSION = "1.0"


class RunInfo(Model):
    tool: str = "dcsaudit"
    tool_version: str
    command: str
    policy: str
    exit_status: int | None = Field(default=None, description="0 policy passed, 1 policy failed, 4 interrupted")
    errors: list[str] = Field(default_factory=list, description="audit-level problems (not per-probe)")
    complete: bool = Field(default=True, description="every stage ran to its end; false when the run was "
                           "interrupted (the report then holds what finished, and nothing absent is a pass)")
    interrupted: str | None = Field(default=None, description="why the run stopped early, e.g. 'SIGTERM received "
                                    "during stage dicom.audit' (None: it was not interrupted)")
    hosts: int = Field(default=0, description="configured hosts audited (CIDR ranges and --targets expanded)")
    unreachable_hosts: list[str] = Field(
        default_factory=list, description="configured hosts that did not resolve or answered on no port")


class Report(Model):
    schema_version: str = SCHEMA_VERSION
    deployment: str
    started_at: datetime
    finished_at: datetime
    run: RunInfo
    endpoints: list[Endpoint] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    application_entities: list[ApplicationEntity] = Field(default_factory=list)
    initiators: list[Initiator] = Field(default_factory=list)
    audit_trail: AuditTrail | None = None
    annex: Annex = Field(default_factory=Annex)
