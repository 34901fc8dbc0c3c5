"""The catalogue of checks. Importing this package registers every check module listed below."""

from dcsaudit.checks import audit_trail, dicom_association, dicom_exposure, inventory, tls  # noqa: F401  (registration by import)
from dcsaudit.checks.base import REGISTRY, AuditData, CheckSpec, Verdict, check

__all__ = ["REGISTRY", "AuditData", "CheckSpec", "Verdict", "check"]
