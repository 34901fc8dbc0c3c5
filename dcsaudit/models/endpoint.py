"""An audited endpoint: one port of one host and what speaks behind it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dcsaudit.models.audit import SyslogSendResult
from dcsaudit.models.core import Model, Reason
from dcsaudit.models.dicom import AbortInfo, RejectTriple
from dcsaudit.models.network import (
    ClientCertResult,
    DicomwebResult,
    DnsResult,
    DnsSdAdvert,
    LdapResult,
    NtpResult,
)
from dcsaudit.models.tls import TlsResult

Service = Literal["dicom", "dicom-tls", "tls", "http", "https", "syslog-tls", "syslog-udp", "ntp", "unknown"]
PortState = Literal["open", "closed", "filtered"]

# What one identification connection saw.
AnswerKind = Literal[
    "dicom",  # an A-ASSOCIATE-AC, A-ASSOCIATE-RJ or A-ABORT: the peer speaks the DICOM Upper Layer
    "http",  # an HTTP status line
    "tls",  # a TLS handshake completed (or was refused for want of a client certificate)
    "tls-alert",  # a TLS alert: a TLS server that wants TLS, or refused our handshake
    "not-tls",  # the answer to a ClientHello is not TLS
    "tls-error",  # the TLS session failed after the handshake
    "client-cert",  # the server refused a missing client certificate after the handshake (TLS 1.3)
    "banner",  # the server spoke first inside TLS (not DICOM)
    "closed",  # the peer closed without an answer
    "silent",  # no answer before the timeout
    "refused",  # TCP connection refused
    "garbage",  # an answer that is not the protocol tried
    "error",  # anything else
    "not-probed",  # this connection was not tried (``reason`` says why)
]
PduName = Literal["A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "A-ASSOCIATE-RJ", "P-DATA-TF", "A-RELEASE-RQ",
                  "A-RELEASE-RP", "A-ABORT"]


class IdentifyAnswer(Model):
    """What one identification connection saw (the part every protocol shares)."""

    kind: AnswerKind
    ok: bool = Field(description="the peer spoke the protocol tried (a DICOM reject is still ok)")
    reason: Reason | None = None
    first_bytes: str | None = Field(default=None, description="hex of the first bytes of an unrecognised answer")
    evidence: str | None = None


class DicomAnswer(IdentifyAnswer):
    """The first answer to an A-ASSOCIATE-RQ for Verification (PS3.8 §9.3), plaintext or inside TLS."""

    called_ae: str = ""
    calling_ae: str = ""
    pdu: PduName | None = Field(default=None, description="type of the first PDU received")
    reject: RejectTriple | None = None
    abort: AbortInfo | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    max_pdu_length: int | None = None
    context_accepted: bool | None = Field(default=None, description="the A-ASSOCIATE-AC accepted Verification")


class TlsHandshakeAnswer(IdentifyAnswer):
    """The permissive TLS handshake of identification (not the TLS audit)."""

    version: str | None = None
    cipher: str | None = None
    bare_connect: bool = Field(default=False, description="the handshake failed and left a connection without a "
                               "request (an acceptor may count it as an association until its ARTIM timer)")


class HttpAnswer(IdentifyAnswer):
    """The answer to ``HEAD /`` (plaintext or inside TLS)."""

    status_line: str | None = None
    over_tls: bool = False


class Identification(Model):
    """What each identification probe saw on one endpoint; each is null when that probe did not run."""

    dicom: DicomAnswer | None = Field(default=None, description="plaintext A-ASSOCIATE-RQ")
    tls: TlsHandshakeAnswer | None = Field(default=None, description="TLS handshake")
    dicom_in_tls: DicomAnswer | None = Field(default=None, description="A-ASSOCIATE-RQ inside the TLS session")
    http: HttpAnswer | None = Field(default=None, description="HEAD / (inside TLS when the handshake succeeded)")


class Endpoint(Model):
    """One port of one host, with what identification found behind it."""

    host: str
    port: int
    protocol: Literal["tcp", "udp"]
    state: PortState
    service: Service = "unknown"
    service_detail: str = ""
    plaintext_dicom: bool | None = Field(
        default=None, description="an A-ASSOCIATE-RQ without TLS got a DICOM answer (None: not tried)"
    )
    identification: Identification | None = Field(default=None, description="what identification saw; null when "
                                                   "not run")
    tls: TlsResult | None = Field(default=None, description="TLS audit; null when not run")
    syslog_send: SyslogSendResult | None = Field(
        default=None, description="test audit message sent to the product's collector; null when not run")
    client_certs: ClientCertResult | None = Field(
        default=None, description="defective client certificates presented to a TLS server; null when not run")
    ntp: NtpResult | None = Field(default=None, description="NTP queries (RFC 5905); null when not run")
    dicomweb: DicomwebResult | None = Field(default=None, description="DICOMweb capability checks (PS3.18); null "
                                            "when not run")
    ldap: LdapResult | None = Field(default=None, description="LDAP root DSE, binds and StartTLS; null when not run")
    dns: DnsResult | None = Field(default=None, description="DNS server facts (open resolver, DNSSEC, AXFR); null when "
                                  "not run")
    dns_sd: list[DnsSdAdvert] = Field(default_factory=list, description="DICOM DNS-SD adverts naming this endpoint "
                                      "(or its host, when the advertised port was not found open)")
    evidence: list[str] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}/{self.protocol}"
