"""TLS audit results (issue 3). Owned by the TLS probe; the contract names below are relied on by scripts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dcsaudit.models.core import Model

TLS_VERSIONS = ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3")


class ProfileVerdict(Model):
    conforms: bool
    reasons: list[str] = Field(default_factory=list)


class TlsResult(Model):
    """Contract: protocols, preference, client_certificate, groups, signature_algorithms, certificate, profiles."""

    protocols: dict[str, list[str]] = Field(
        default_factory=dict, description="version -> accepted suites (IANA names) in preference order"
    )
    preference: Literal["server", "client", "unknown"] = "unknown"
    client_certificate: Literal["required", "optional", "not_requested", "unknown"] = "unknown"
    groups: list[str] = Field(default_factory=list)
    signature_algorithms: list[str] = Field(default_factory=list)
    certificate: dict[str, object] | None = None
    profiles: dict[str, ProfileVerdict] = Field(default_factory=dict)
    error: str | None = None
    evidence: list[str] = Field(default_factory=list)
