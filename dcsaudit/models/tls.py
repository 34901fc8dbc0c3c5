"""TLS audit results (RFC 8446, RFC 5246, PS3.15 B.12/B.13). The contract names below are relied on by scripts.

Contract (``report.json`` → endpoint ``tls``): ``protocols``, ``preference``, ``client_certificate``,
``groups``, ``signature_algorithms``, ``certificate``, ``profiles``. Everything else is an extension.

The TLS probe records facts only. ``profiles`` and ``retired_profiles`` are judgements of those facts by
the rule book (``dcsaudit.rules.tls_profiles``, ``configs/tls_profiles.yaml``): the probe leaves them
empty, the checks and the annex judge the facts themselves, and ``tls_profiles.judge_endpoints`` (when
the report is assembled) fills them for readers of ``report.json``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from dcsaudit.models.core import Model

TLS_VERSIONS = ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3")
Preference = Literal["server", "client", "unknown"]


Conformance = Literal["conforms", "conforms_with_should_deviations", "does_not_conform"]
FallbackScsv = Literal["supported", "not_supported", "not_applicable", "undetermined"]


class ProfileVerdict(Model):
    """One profile judged rule by rule; each rule keeps the level (MUST / SHOULD) its source gives it."""

    conforms: bool = Field(description="no MUST-level rule fails (SHOULD-level deviations do not break conformance)")
    verdict: Conformance = Field(default="conforms", description="conforms / conforms_with_should_deviations "
                                 "(only SHOULD-level rules fail: see warnings) / does_not_conform (see reasons)")
    reasons: list[str] = Field(default_factory=list, description="why it does not conform (MUST-level rules)")
    warnings: list[str] = Field(default_factory=list, description="SHOULD-level deviations; do not break conformance")
    sources: list[str] = Field(default_factory=list, description="sections the failed MUST-level rules cite")
    warning_sources: list[str] = Field(default_factory=list, description="sections the SHOULD-level deviations cite")

    @model_validator(mode="before")
    @classmethod
    def _derive_verdict(cls, data: Any) -> Any:
        """A verdict left out (older report.json) follows from ``conforms`` and ``warnings``."""
        if isinstance(data, dict) and "verdict" not in data and "conforms" in data:
            data = {**data, "verdict": "does_not_conform" if not data["conforms"]
                    else "conforms_with_should_deviations" if data.get("warnings") else "conforms"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ProfileVerdict:
        if self.conforms == (self.verdict == "does_not_conform"):
            raise ValueError(f"verdict {self.verdict!r} contradicts conforms={self.conforms}")
        return self


class CertificateInfo(Model):
    """The leaf certificate the server presented, and how its chain validated (RFC 5280, RFC 9325 §4.5)."""

    subject: str
    issuer: str
    serial: str
    sha256: str
    key_type: Literal["RSA", "EC", "DSA", "Ed25519", "Ed448", "other"]
    key_bits: int
    curve: str | None = None
    signature_algorithm: str
    signature_hash: str | None = Field(description="hash of the issuer's signature: sha256, sha1, md5, …")
    not_before: str
    not_after: str
    days_to_expiry: int
    expired: bool
    not_yet_valid: bool
    self_signed: bool
    san_dns: list[str] = Field(default_factory=list)
    san_ip: list[str] = Field(default_factory=list)
    matches_address: bool | None = Field(default=None, description="a SAN names the scanned host/address")
    chain_length: int = 1
    chain: list[dict[str, str]] = Field(default_factory=list, description="subject/issuer/signature hash per cert")
    chain_valid: bool | None = Field(default=None, description="None: no CA configured to validate against")
    chain_error: str | None = None


class TlsFeatures(Model):
    """Per-connection features (RFC 9325 §3.3, §3.5; RFC 7507; RFC 5746; RFC 7627; RFC 7366)."""

    compression: bool | None = None
    renegotiation_info: bool | None = None
    extended_master_secret: bool | None = None
    encrypt_then_mac: bool | None = None
    fallback_scsv: bool | None = Field(default=None, description="RFC 7507: a lower-version hello with "
                                       "TLS_FALLBACK_SCSV got inappropriate_fallback (None: see fallback_scsv_status)")
    fallback_scsv_status: FallbackScsv | None = Field(
        default=None, description="supported / not_supported / not_applicable (one version accepted) / "
        "undetermined (see fallback_scsv_detail); None: not probed")
    fallback_scsv_detail: str | None = Field(default=None, description="the version probed and the answer, or why "
                                             "the fact could not be established")
    prefers_tls13: bool | None = Field(default=None, description="offered 1.2 and 1.3, the server chose 1.3")
    client_renegotiation: bool | None = Field(default=None, description="client-initiated renegotiation accepted")


class TlsSession(Model):
    """The TLS session a DICOM association actually ran over (read from the completed OpenSSL handshake)."""

    version: str = Field(description="TLSv1.0 … TLSv1.3")
    cipher_suite: str = Field(description="IANA name (OpenSSL's name when the registry has no IANA one)")
    widened: bool = Field(default=False, description="negotiated only after the default client context failed, "
                          "with legacy versions and suites enabled (OpenSSL security level 0)")


class Vulnerabilities(Model):
    """Known-vulnerability tests (sslyze's method; see probes/tls/vulns.py). None: not run or undetermined,
    which ``undetermined`` and ``notes`` tell apart."""

    heartbleed: bool | None = None
    ccs_injection: bool | None = None
    robot: str | None = Field(default=None, description="sslyze RobotScanResultEnum name, or None")
    notes: list[str] = Field(default_factory=list)
    undetermined: list[str] = Field(default_factory=list, description="tests that ran without a verdict "
                                    "(Heartbleed, CCS injection, ROBOT); their reasons are in notes")
    evidence: list[str] = Field(default_factory=list, description="one evidence item per test: what was sent "
                                "and what came back")


class TlsResult(Model):
    """Contract: protocols, preference, client_certificate, groups, signature_algorithms, certificate, profiles."""

    protocols: dict[str, list[str]] = Field(
        default_factory=dict, description="version -> accepted suites (IANA names) in preference order"
    )
    preference: Preference = "unknown"
    client_certificate: Literal["required", "optional", "not_requested", "unknown"] = "unknown"
    groups: list[str] = Field(default_factory=list, description="key exchange groups (TLS 1.3 then 1.2, no dups)")
    signature_algorithms: list[str] = Field(default_factory=list, description="TLS 1.3 then TLS 1.2 schemes")
    certificate: CertificateInfo | None = None
    profiles: dict[str, ProfileVerdict] = Field(
        default_factory=dict, description="PS3.15 current profile -> verdict, judged from the facts here by the "
        "rule book (dcsaudit.rules.tls_profiles) for report readers; empty when the audit failed")
    error: str | None = None
    evidence: list[str] = Field(default_factory=list)
    # Extensions beyond the contract.
    preference_by_version: dict[str, Preference] = Field(default_factory=dict)
    groups_tls13: list[str] = Field(default_factory=list)
    groups_tls13_preference: Preference = "unknown"
    groups_tls12: list[str] = Field(default_factory=list)
    groups_tls12_preference: Preference = "unknown"
    dhe_bits: int | None = Field(default=None, description="TLS 1.2 DHE prime size from ServerKeyExchange")
    signature_algorithms_tls13: list[str] = Field(default_factory=list)
    signature_algorithms_tls13_preference: Preference = "unknown"
    signature_algorithms_tls12: list[str] = Field(default_factory=list)
    signature_algorithms_tls12_preference: Preference = "unknown"
    features: TlsFeatures = Field(default_factory=TlsFeatures)
    vulnerabilities: Vulnerabilities = Field(default_factory=Vulnerabilities)
    retired_profiles: list[str] = Field(default_factory=list, description="retired PS3.15 profiles recognised "
                                        "by the rule book's fingerprints (filled like profiles)")
    handshakes: int = Field(default=0, description="connections the audit opened")
    warnings: list[str] = Field(default_factory=list, description="why a list may be incomplete (timeouts)")
    duration_ms: float = 0.0

    def accepted_versions(self) -> list[str]:
        return [v for v in TLS_VERSIONS if self.protocols.get(v)]
