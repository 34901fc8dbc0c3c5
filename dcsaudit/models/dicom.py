"""DICOM association audit results (issue 4). Contract names are relied on by scripts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dcsaudit.models.core import Model

UidOutcome = Literal["accepted", "rejected", "ignored", "not_tested"]


class UserIdentityResult(Model):
    types: dict[str, UidOutcome] = Field(
        default_factory=lambda: {str(t): "not_tested" for t in range(1, 6)}
    )
    enforced: bool | None = None


class ApplicationEntity(Model):
    ae_title: str
    host: str
    port: int
    tls: bool
    verification: bool | None = None
    accepts_any_called_ae: bool | None = None
    accepts_any_calling_ae: bool | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    max_pdu_length: int | None = None
    user_identity: UserIdentityResult = Field(default_factory=UserIdentityResult)
    artim_seconds: float | None = None
    max_associations: int | None = None
    evidence: list[str] = Field(default_factory=list)


class Initiator(Model):
    """An association captured by ``dcsaudit listen`` (the product as initiator)."""

    calling_ae: str
    called_ae: str
    peer: str
    evidence: list[str] = Field(default_factory=list)
