"""The core family of report models: evidence, findings, endpoints, annex cells.

One family of frozen pydantic models, serialised directly into ``report.json``, with a published JSON Schema.
Probes produce :class:`Evidence`; checks turn evidence into :class:`Finding`; the annex builder turns
both, plus the vendor's declared values, into :class:`AnnexTable` cells that carry their provenance.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    """Base of every report model: immutable, and unknown fields are an error, not a silent drop."""

    # defer_build: a model's validator is built when first used, not at import; building all ~80 at import
    # cost every run ≈ 0.15 s before its first packet (issue 16). The published schema is the same.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Reason(StrEnum):
    """Why a probe did not get the answer it wanted. Errors are results, never just log lines."""

    REFUSED = "refused"
    TIMEOUT = "timeout"
    RESET = "reset"
    UNREACHABLE = "unreachable"
    TLS_FAILURE = "tls_failure"
    CLIENT_CERTIFICATE_REQUIRED = "client_certificate_required"
    PROTOCOL_ERROR = "protocol_error"
    NOT_PERMITTED = "not_permitted"  # the config does not allow this probe (e.g. intrusive)
    NOT_AVAILABLE = "not_available"  # a tool or privilege the probe needs is missing
    SKIPPED = "skipped"
    INTERNAL_ERROR = "internal_error"


class Evidence(Model):
    """One observation on the wire (or the reason none could be made)."""

    id: str
    probe: str = Field(description="probe that made the observation, e.g. 'identify.dicom'")
    target: str = Field(description="host:port/protocol the observation is about")
    at: datetime
    duration_ms: float = 0.0
    ok: bool = Field(description="the probe got a protocol answer (a DICOM reject is still ok)")
    reason: Reason | None = None
    summary: str
    data: dict[str, Any] = Field(
        default_factory=dict, description="details for display only: checks, the annex and audit-message "
        "correlation read the typed results on endpoints, AEs and the audit trail (tests/test_layering.py)")


Severity = Literal["info", "low", "medium", "high", "critical"]
FindingStatus = Literal["pass", "fail", "error", "not_applicable"]


class Finding(Model):
    """The verdict of one check on one target."""

    check_id: str
    title: str
    status: FindingStatus
    severity: Severity
    target: str
    summary: str
    evidence: list[str] = Field(default_factory=list, description="ids of Evidence items")
    references: list[str] = Field(default_factory=list, description="standard sections the check cites")
    gating: bool = Field(default=False, description="the policy makes this finding fail the audit")
    suppressed: bool = Field(default=False, description="an active entry of the --suppressions file covers it: "
                             "kept in the report, never gating")
    suppression: str | None = Field(default=None, description="the covering suppression: reason, owner, expiry")


class Provenance(StrEnum):
    """Where the value of an annex cell comes from; every rendered cell shows it."""

    VERIFIED = "verified"  # observed on the wire; evidence ids say where
    DECLARED = "declared"  # stated by the vendor in the config, not observable from the network
    CONTRADICTED = "contradicted"  # declared X, observed Y
    NOT_VERIFIABLE = "not_verifiable"  # neither observed nor declared: the network cannot show it
    NOT_OBSERVED = "not_observed"  # observable in principle, but this audit did not see it
    LABEL = "label"  # a row heading from the PS3.2 template, not a claim about the product


class Cell(Model):
    value: str = ""
    provenance: Provenance = Provenance.NOT_VERIFIABLE
    evidence: list[str] = Field(default_factory=list)
    declared: str | None = None
    observed: str | None = None
    note: str = ""


class AnnexTable(Model):
    """A table laid out as in PS3.2 Annex N: same number, title and column headings."""

    id: str = Field(description="PS3.2 table number, e.g. 'N.8-3'")
    title: str
    columns: list[str]
    rows: list[list[Cell]] = Field(default_factory=list)
    empty_reason: str = Field(default="", description="why the table has no rows (said, never invented)")
    notes: list[str] = Field(default_factory=list)
    numbered: bool = Field(default=True, description="False for a table the standard describes without a "
                           "number (the port table of N.8.3); its id is then its section's id")


class AnnexSection(Model):
    id: str = Field(description="PS3.2 section number, e.g. 'N.8.3'")
    title: str
    text: list[str] = Field(default_factory=list)
    tables: list[AnnexTable] = Field(default_factory=list)


class Annex(Model):
    standard: str = "DICOM PS3.2 2024d Annex N"
    sections: list[AnnexSection] = Field(default_factory=list)
