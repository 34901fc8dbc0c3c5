"""Typed report models (one family, serialised directly)."""

from dcsaudit.models.audit import AuditMessage, AuditTrail
from dcsaudit.models.core import (
    Annex,
    AnnexSection,
    AnnexTable,
    Cell,
    Evidence,
    Finding,
    Model,
    Provenance,
    Reason,
)
from dcsaudit.models.dicom import ApplicationEntity, Initiator, UserIdentityResult
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.report import Report, RunInfo
from dcsaudit.models.tls import ProfileVerdict, TlsResult

__all__ = [
    "Annex", "AnnexSection", "AnnexTable", "ApplicationEntity", "AuditMessage", "AuditTrail", "Cell",
    "Endpoint", "Evidence", "Finding", "Initiator", "Model", "ProfileVerdict", "Provenance", "Reason",
    "Report", "RunInfo", "TlsResult", "UserIdentityResult",
]
