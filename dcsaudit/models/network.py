"""Results of the network-service probes (issue 15): client-certificate validation by the product as a
TLS server (PS3.15 B.9/B.12, RFC 5280 §6, RFC 8446 §4.4.2.4), server-certificate validation by the product
as TLS client (``listen --tls-cert-tests``) and NTP (RFC 5905).

Probes record facts only: which defective client certificate the product accepted, what an NTP server
answered. Checks and the annex judge them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dcsaudit.models.core import Model
from dcsaudit.models.tls import CertificateInfo

ClientCertKind = Literal["untrusted_ca", "self_signed", "expired", "not_yet_valid", "wrong_key_usage", "control"]
ClientCertOutcome = Literal[
    "accepted",  # the handshake completed and the product went on talking (answered a request, or no refusal)
    "refused",  # a TLS alert or a closed connection before any application answer
    "association_rejected",  # TLS went through, then the product answered A-ASSOCIATE-RJ / A-ABORT
    "undetermined",  # the attempt failed for another reason (timeout, connection refused): see detail
]
ClientCertRequest = Literal["required", "optional", "not_requested", "unknown"]


class ClientCertTrial(Model):
    """One handshake presenting one certificate, and what the product did with it."""

    kind: ClientCertKind
    outcome: ClientCertOutcome
    isolated: bool = Field(description="the certificate's only defect is ``kind``: it is signed by a CA the "
                           "product trusts (scan.client_certs.signing_ca_*). False: it also comes from an "
                           "unknown CA, so a refusal does not show which defect was noticed")
    tls_version: str | None = None
    alert: str | None = Field(default=None, description="the TLS alert (OpenSSL reason) that refused it")
    answer: str | None = Field(default=None, description="what the product answered after the handshake")
    detail: str = ""
    evidence: str | None = None


class ClientCertResult(Model):
    """Defective client certificates presented to one TLS endpoint, one handshake each."""

    requested: ClientCertRequest = Field(description="whether the server asks for a client certificate "
                                         "(from the TLS audit; 'unknown' when it did not run)")
    signing_ca: bool = Field(default=False, description="a CA the product trusts signed the expired / "
                             "not-yet-valid / wrong-key-usage certificates")
    control: ClientCertTrial | None = Field(default=None, description="the configured good client "
                                            "certificate (credentials.tls_client), or one from the signing CA")
    trials: list[ClientCertTrial] = Field(default_factory=list)
    error: str | None = None
    evidence: list[str] = Field(default_factory=list)

    def trial(self, kind: ClientCertKind) -> ClientCertTrial | None:
        return next((t for t in self.trials if t.kind == kind), None)


ServerCertKind = Literal["control", "untrusted_ca", "self_signed", "expired", "wrong_host_name"]
# The defective server certificates ``listen --tls-cert-tests`` serves, in the order it serves them after the control.
SERVER_CERT_KINDS: tuple[ServerCertKind, ...] = ("untrusted_ca", "self_signed", "expired", "wrong_host_name")
ServerCertOutcome = Literal[
    "accepted",  # the handshake completed and the product sent an A-ASSOCIATE-RQ: it went on
    "refused",  # the product sent a TLS alert, or closed the connection before any A-ASSOCIATE-RQ
    "undetermined",  # neither (timeout, listener stopped): see detail
]


class ServedCertificate(Model):
    """The server certificate ``dcsaudit listen --tls-cert-tests`` served on one TLS connection from the product
    (as TLS client, PS3.15 B.9/B.12; RFC 5280 §6, RFC 6125 §6), and what the product did with it."""

    kind: ServerCertKind
    isolated: bool = Field(description="the certificate's only defect is ``kind``: the expired and wrong-host "
                           "certificates are signed by a CA the product trusts (listen --tls-cert-signing-ca). "
                           "False: they also come from an unknown CA, so a refusal does not show which defect "
                           "was noticed")
    subject: str
    sha256: str
    handshake: Literal["completed", "failed", "timed_out", "interrupted"]
    alert: str | None = Field(default=None, description="the TLS alert the product sent (OpenSSL reason), if any")
    associate_rq: bool = Field(description="an A-ASSOCIATE-RQ followed the handshake")
    outcome: ServerCertOutcome
    detail: str = ""


class NtpResult(Model):
    """A mode-3 client query (RFC 5905 §7.3) and read-only control queries on one UDP port."""

    answered: bool
    version: int | None = None
    mode: int | None = None
    stratum: int | None = None
    leap: int | None = Field(default=None, description="0 no warning, 1/2 leap second pending, 3 unsynchronised")
    reference_id: str | None = Field(default=None, description="kiss code / clock source, or an IPv4 address")
    root_delay_ms: float | None = None
    root_dispersion_ms: float | None = None
    precision: int | None = None
    offset_ms: float | None = Field(default=None, description="server clock minus ours (loopback: near 0)")
    mode6_answers: bool | None = Field(default=None, description="answers an NTP mode-6 READVAR control query "
                                       "(RFC 9327), which can be used for reflection")
    mode6_amplification: float | None = Field(default=None, description="bytes answered / bytes asked")
    mode7_answers: bool | None = Field(default=None, description="answers a mode-7 MON_GETLIST (monlist) "
                                       "request (CVE-2013-5211 amplification)")
    nts_ke: bool | None = Field(default=None, description="NTS-KE (RFC 8915) answered a TLS handshake on TCP 4460")
    error: str | None = None
    evidence: list[str] = Field(default_factory=list)


DicomwebTransaction = Literal["qido", "wado", "stow"]


class DicomwebAnswer(Model):
    """The status of one capability request (no data stored, retrieved or matched)."""

    transaction: DicomwebTransaction
    status: int | None = Field(description="HTTP status; None: no HTTP answer (see error)")
    content_type: str | None = None
    auth_schemes: list[str] = Field(default_factory=list, description="WWW-Authenticate challenge schemes")
    error: str | None = None
    evidence: str | None = None

    @property
    def challenged(self) -> bool:
        """The server asked for authentication (RFC 9110 §15.5.2 401, §15.5.4 403)."""
        return self.status in (401, 403)


class DicomwebResult(Model):
    """DICOMweb on one HTTP(S) endpoint (PS3.18): where it answered and who it answers."""

    base_path: str | None = Field(description="first configured base path where the search was answered as a "
                                  "search or challenged (401/403); None: none")
    paths_tried: list[str] = Field(default_factory=list)
    confirmed: bool = Field(default=False, description="a search answered 2xx in a DICOM JSON media type, or 204 "
                            "(with or without credentials): a DICOMweb service, not an authentication wall")
    over_tls: bool = False
    unauthenticated: list[DicomwebAnswer] = Field(default_factory=list)
    authenticated: list[DicomwebAnswer] = Field(default_factory=list, description="the same requests with the "
                                                "configured credentials (scan.dicomweb.auth); empty without them")
    auth_schemes: list[str] = Field(default_factory=list, description="schemes offered in WWW-Authenticate")
    hsts: str | None = Field(default=None, description="Strict-Transport-Security header (RFC 6797)")
    cors_allow_origin: str | None = Field(default=None, description="Access-Control-Allow-Origin answered to a "
                                          "foreign Origin")
    cors_allow_credentials: str | None = None
    error: str | None = None
    evidence: list[str] = Field(default_factory=list)

    def answer(self, kind: DicomwebTransaction, authenticated: bool = False) -> DicomwebAnswer | None:
        return next((a for a in (self.authenticated if authenticated else self.unauthenticated)
                     if a.transaction == kind), None)


BindOutcome = Literal["accepted", "refused"]


class LdapTls(Model):
    """The TLS session of LDAPS or of StartTLS (RFC 4513 §3): what was negotiated, with our permissive client."""

    version: str | None = None
    cipher: str | None = None
    certificate: CertificateInfo | None = None
    error: str | None = None


class LdapResult(Model):
    """LDAP on one TCP port (RFC 4511, RFC 4512 §5.1 root DSE, RFC 4513 binds and StartTLS)."""

    ldaps: bool = Field(description="LDAP inside TLS from the first byte (port 636 style)")
    answered: bool = Field(description="an LDAP answer to the root DSE search")
    versions: list[int] = Field(default_factory=list, description="supportedLDAPVersion")
    sasl_mechanisms: list[str] = Field(default_factory=list, description="supportedSASLMechanisms")
    starttls_offered: bool | None = Field(default=None, description="supportedExtension lists StartTLS "
                                          "(1.3.6.1.4.1.1466.20037)")
    naming_contexts: list[str] = Field(default_factory=list)
    vendor: str | None = None
    anonymous_bind: BindOutcome | None = Field(default=None, description="RFC 4513 §5.1.1 anonymous bind")
    anonymous_bind_detail: str | None = None
    simple_bind_plaintext: BindOutcome | None = Field(
        default=None, description="a simple bind with the configured test account, without TLS (None: no account "
        "configured, or the port is LDAPS)")
    simple_bind_result: int | None = Field(default=None, description="LDAP resultCode of that bind (RFC 4511 §4.1.9: "
                                           "0 success, 13 confidentialityRequired, 49 invalidCredentials)")
    simple_bind_detail: str | None = None
    tls: LdapTls | None = Field(default=None, description="LDAPS session, or the StartTLS one when offered")
    error: str | None = None
    evidence: list[str] = Field(default_factory=list)


class DnsResult(Model):
    """A DNS server on one host and port (RFC 1035, RFC 2181; RFC 5358 open resolvers; RFC 4035 DO bit;
    RFC 5936 AXFR)."""

    answers_udp: bool
    answers_tcp: bool | None = None
    recursion_available: bool | None = Field(default=None, description="RA flag in the answer (RFC 1035 §4.1.1)")
    open_resolver: bool | None = Field(default=None, description="answered a recursive query for a name outside "
                                       "its zones with data or NXDOMAIN and RA set (RFC 5358)")
    recursion_detail: str | None = None
    edns: bool | None = Field(default=None, description="an OPT record in the answer (RFC 6891)")
    dnssec_do: bool | None = Field(default=None, description="the DO bit echoed in the answer's OPT (RFC 3225)")
    dnssec_signatures: bool | None = Field(default=None, description="RRSIG records returned for the zone's SOA "
                                           "(needs scan.dns.zone)")
    zone: str | None = None
    axfr: Literal["refused", "allowed"] | None = Field(default=None, description="zone transfer of scan.dns.zone "
                                                       "over TCP; None: no zone configured or no answer")
    axfr_detail: str | None = None
    error: str | None = None
    evidence: list[str] = Field(default_factory=list)


class DnsSdAdvert(Model):
    """One DICOM service instance advertised in DNS-SD (RFC 6763 PTR → SRV + TXT), as the DNS server gave it.

    Kept on the audited endpoint it names (host and port), or on the first endpoint of that host when the
    advertised port was not found open; the checks compare it with what was observed there.
    """

    service_type: Literal["_dicom._tcp", "_dicom-tls._tcp"]
    instance: str
    target: str = Field(description="SRV target host name")
    addresses: list[str] = Field(default_factory=list, description="A/AAAA of the target from the same server")
    port: int
    txt: dict[str, str] = Field(default_factory=dict, description="TXT key=value pairs (RFC 6763 §6)")
    ae_title: str | None = Field(default=None, description="the TXT 'aet' value (PS3.15 / PS3.18 DNS-SD keys)")
    port_observed_open: bool = Field(description="the advertised host and port is an open endpoint in this audit")
    evidence: list[str] = Field(default_factory=list)
