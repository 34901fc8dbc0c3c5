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
    exit_status: int | None = None
    errors: list[str] = Field(default_factory=list, description="audit-level problems (not per-probe)")


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
