"""Typed deployment configuration, loaded from YAML and validated before any packet is sent.

Secrets are only ever *referenced* (an environment variable name or a file path); a literal secret in
the file is a config error. Vendor declarations live under ``declared`` keyed by PS3.2 table id and
row label, so the annex can show declared values next to (or against) what was observed.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from dcsaudit import logs

# Ports that matter for DICOM deployments (DIMSE, DIMSE-TLS, DICOMweb, PACS web, syslog, LDAP).
DEFAULT_TCP_PORTS: tuple[int, ...] = (
    104, 11112, 2761, 2762, 4242, 4006, 5678, 8104, 80, 443, 8042, 8080, 8443, 514, 601, 6514, 389, 636,
)
DEFAULT_UDP_PORTS: tuple[int, ...] = (514, 123)

Port = Annotated[int, Field(ge=1, le=65535)]


class ConfigError(Exception):
    """A config that cannot be used; the message is one line naming the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """Where a secret can be read: exactly one of an environment variable or a file."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file' (literal secrets are not allowed)")
        return self

    def resolve(self) -> SecretStr:
        """Read the secret now; the value never appears in a message or exception."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"secret: environment variable {self.env} is not set")
        else:
            assert self.file is not None
            try:
                value = self.file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"secret: cannot read file {self.file}: {exc.strerror}") from None
        logs.register_secret(value)  # redacted from every log record from now on
        return SecretStr(value)

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"


class TlsClientCredentials(_Strict):
    """A client certificate for endpoints that require mutual TLS; the key is a file reference."""

    cert_file: Path
    key_file: Path
    key_password: SecretRef | None = None


class UserIdentityCredentials(_Strict):
    """Valid credentials for User Identity Negotiation (PS3.7 D.3.3.7), by reference only."""

    username: str | None = None
    passcode: SecretRef | None = None
    kerberos_ticket: SecretRef | None = None
    saml_assertion: SecretRef | None = None
    jwt: SecretRef | None = None


class Credentials(_Strict):
    tls_client: TlsClientCredentials | None = None
    ca_file: Path | None = Field(default=None, description="CA bundle used to validate server chains")
    user_identity: UserIdentityCredentials | None = None


class Host(_Strict):
    address: str
    name: str | None = None
    tcp_ports: list[Port] | None = Field(default=None, description="ports to inventory; default list when absent")
    udp_ports: list[Port] | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            if not v or len(v) > 253 or any(c.isspace() for c in v):
                raise ValueError(f"not an IP address or host name: {v!r}") from None
        return v


class ApplicationEntityConfig(_Strict):
    ae_title: str = Field(min_length=1, max_length=16)
    host: str
    port: Port
    tls: bool = False
    role: Literal["scp", "scu", "both"] = "scp"

    @field_validator("ae_title")
    @classmethod
    def _ae_title(cls, v: str) -> str:
        # PS3.5 AE VR: no backslash or control characters, not all spaces.
        if not v.strip() or "\\" in v or any(ord(c) < 0x20 or ord(c) > 0x7E for c in v):
            raise ValueError(f"not a valid AE title: {v!r}")
        return v


class Timeouts(_Strict):
    connect: float = Field(default=2.0, gt=0, le=120)
    read: float = Field(default=4.0, gt=0, le=300)
    tls_handshake: float = Field(default=4.0, gt=0, le=120)
    dicom: float = Field(default=8.0, gt=0, le=300, description="ACSE/DIMSE timeout for one association")
    nmap: float = Field(default=60.0, gt=0, le=3600)
    endpoint: float = Field(default=120.0, gt=0, le=3600, description="bound on all probes of one endpoint")


class Concurrency(_Strict):
    overall: int = Field(default=64, ge=1, le=1024)
    per_host: int = Field(default=8, ge=1, le=128)


class Intrusive(_Strict):
    """Probes that may disturb a fragile production system are opt-in."""

    max_associations: bool = False
    max_associations_cap: int = Field(default=20, ge=1, le=500)
    measure_timeouts: bool = False  # ARTIM, association request and idle timeouts
    passcode_over_plaintext: bool = False  # PS3.7: type 2 passcodes travel in the clear without TLS
    syslog_test_messages: bool = False


class DicomProbeOptions(_Strict):
    """Knobs of the DICOM association audit (PS3.8 §9.3, PS3.7 D.3.3); SOP classes by keyword or UID."""

    sop_classes: list[str] = Field(
        default_factory=lambda: [
            "Verification", "CTImageStorage", "MRImageStorage", "SecondaryCaptureImageStorage",
            "PatientRootQueryRetrieveInformationModelFind", "StudyRootQueryRetrieveInformationModelFind",
            "PatientRootQueryRetrieveInformationModelMove", "StudyRootQueryRetrieveInformationModelMove",
            "PatientRootQueryRetrieveInformationModelGet", "StudyRootQueryRetrieveInformationModelGet",
            "ModalityWorklistInformationModelFind", "ModalityPerformedProcedureStep",
            "StorageCommitmentPushModel",
        ],
        max_length=120, description="SOP classes proposed as presentation contexts (no data is ever sent)")
    default_called_aes: list[str] = Field(
        default_factory=lambda: ["ANY-SCP", "ORTHANC", "STORESCP", "DCM4CHEE", "PACS"], max_length=20)
    default_calling_aes: list[str] = Field(
        default_factory=lambda: ["ANY-SCU", "ECHOSCU", "STORESCU", "FINDSCU", "PYNETDICOM"], max_length=20)
    user_identity: bool = Field(default=True, description="probe User Identity Negotiation types 1-5")
    associations_per_host: int = Field(
        default=1, ge=1, le=16, description="associations open at once to one host's DICOM ports: modalities "
        "often allow one or two, and the audit must never be the reason a product looks busy")
    busy_retry_seconds: float = Field(
        default=32.0, ge=0, le=600, description="how long a rejected-transient (2, 3, x) answer is retried on fresh "
        "connections before the attempt is recorded as 'product busy' (default: a 30 s ARTIM + 2 s)")
    timer_cap_seconds: float = Field(default=35.0, gt=0, le=600,
                                     description="ARTIM / request / idle timers longer than this are reported as '> cap'")


class TlsProbeOptions(_Strict):
    """Knobs of the TLS audit (PS3.15 B.12/B.13, RFC 9325): the expensive parts can be turned off or on."""

    vulnerabilities: bool = Field(default=True, description="sslyze Heartbleed / CCS injection / renegotiation tests")
    robot: bool = Field(default=False, description="sslyze ROBOT test (seconds per endpoint)")
    sslv2_sslv3: bool = True
    connections_per_endpoint: int = Field(default=4, ge=1, le=64,
                                          description="small DICOM servers have few threads; stay below them")


class ScanOptions(_Strict):
    timeouts: Timeouts = Field(default_factory=Timeouts)
    concurrency: Concurrency = Field(default_factory=Concurrency)
    intrusive: Intrusive = Field(default_factory=Intrusive)
    calling_ae_title: str = Field(default="DCSAUDIT", min_length=1, max_length=16)
    udp: bool = Field(default=True, description="UDP inventory (514, 123) when privileges allow")
    use_nmap: bool = True
    syslog_tls_ports: list[Port] = Field(
        default_factory=lambda: [6514],
        description="TLS ports where silence to DICOM/HTTP is read as an RFC 5425 receiver (syslog never answers)")
    tls_audit: bool = True
    tls: TlsProbeOptions = Field(default_factory=TlsProbeOptions)
    dicom_audit: bool = Field(default=True, description="association audit of DICOM endpoints (PS3.8 §9.3)")
    dicom: DicomProbeOptions = Field(default_factory=DicomProbeOptions)


class CollectorOptions(_Strict):
    """The syslog collector run during a scan (RFC 5425/5426, PS3.15 A.6/A.7)."""

    enabled: bool = False
    bind: str = "127.0.0.1"
    tls_port: Port = 6514
    udp_port: Port | None = 514
    cert_file: Path | None = Field(default=None, description="collector certificate; self-signed when absent")
    key_file: Path | None = None
    window_seconds: float = Field(default=5.0, ge=0, le=600)


class DeploymentConfig(_Strict):
    deployment: str = Field(min_length=1, max_length=200)
    description: str = ""
    hosts: list[Host] = Field(min_length=1)
    application_entities: list[ApplicationEntityConfig] = Field(default_factory=list)
    credentials: Credentials = Field(default_factory=Credentials)
    declared: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="PS3.2 table id -> row label -> value the vendor declares"
    )
    scan: ScanOptions = Field(default_factory=ScanOptions)
    collector: CollectorOptions = Field(default_factory=CollectorOptions)
    policy: str = Field(default="default", description="policy name in configs/ or a path to a policy file")

    @model_validator(mode="after")
    def _aes_on_known_hosts(self) -> DeploymentConfig:
        known = {h.address for h in self.hosts} | {h.name for h in self.hosts if h.name}
        for i, ae in enumerate(self.application_entities):
            if ae.host not in known:
                raise ValueError(f"application_entities.{i}.host: {ae.host!r} is not one of the configured hosts")
        return self

    def tcp_ports_for(self, host: Host) -> list[int]:
        ports = set(host.tcp_ports if host.tcp_ports is not None else DEFAULT_TCP_PORTS)
        ports |= {ae.port for ae in self.application_entities if ae.host in (host.address, host.name)}
        return sorted(ports)

    def udp_ports_for(self, host: Host) -> list[int]:
        if not self.scan.udp:
            return []
        return sorted(set(host.udp_ports if host.udp_ports is not None else DEFAULT_UDP_PORTS))

    def address_of(self, host_or_name: str) -> str:
        for h in self.hosts:
            if host_or_name in (h.address, h.name):
                return h.address
        return host_or_name


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}"


def parse_config(data: Any, source: str = "config") -> DeploymentConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        return DeploymentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None


def load_config(path: Path) -> DeploymentConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML") from None
    return parse_config(data, str(path))
