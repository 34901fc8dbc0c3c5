"""Typed deployment configuration, loaded from YAML and validated before any packet is sent.

Secrets are only ever *referenced* (an environment variable name or a file path); a literal secret in
the file is a config error. Vendor declarations live under ``declared`` keyed by PS3.2 table id and
row label, so the annex can show declared values next to (or against) what was observed.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import typing
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
from dcsaudit.errors import ConfigError as ConfigError

# Ports that matter for DICOM deployments (DIMSE, DIMSE-TLS, DICOMweb, PACS web, syslog, LDAP).
DEFAULT_TCP_PORTS: tuple[int, ...] = (
    104, 11112, 2761, 2762, 4242, 4006, 5678, 8104, 80, 443, 8042, 8080, 8443, 514, 601, 6514, 389, 636,
)
DEFAULT_UDP_PORTS: tuple[int, ...] = (514, 123)

Port = Annotated[int, Field(ge=1, le=65535)]


def closest(word: str, candidates: typing.Iterable[str]) -> str | None:
    """The candidate a typo most likely meant (difflib ratio >= 0.6), for "did you mean …?"."""
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str, candidates: typing.Iterable[str]) -> str:
    """`` (did you mean `x`?)`` or nothing: the suffix every "unknown key/id" message ends with."""
    best = closest(word, candidates)
    return f" (did you mean `{best}`?)" if best else ""


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LITERAL_SECRET = "a literal secret is not allowed here: use {env: NAME} or {file: PATH}"


def host_problem(value: str) -> str | None:
    """Why ``value`` is not an IP address, an RFC 1123 host name or a CIDR range (None: it is one).

    ``127.0.0.300`` is neither an address nor a name: RFC 1123 §2.1 names never end in an all-numeric
    label, so a mistyped address is caught instead of being looked up as a name.
    """
    if "/" in value:
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError:
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                return f"{value!r} is not a CIDR range (address/prefix length)"
            return f"{value!r} has host bits set; the range is written {net}"
        return None
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        pass
    name = value.removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return f"{value!r} is not an IP address, a host name (RFC 1123) or a CIDR range"
    if labels[-1].isdigit():
        return f"{value!r} is not a valid IP address (and a host name cannot end in an all-numeric label)"
    return None


def is_cidr(value: str) -> bool:
    return "/" in value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built when used (models/core.py)


class SecretRef(_Strict):
    """Where a secret can be read: exactly one of an environment variable or a file."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _reference_not_literal(cls, data: Any) -> Any:
        if not isinstance(data, dict):  # the value itself, never echoed
            raise ValueError(LITERAL_SECRET)
        return data

    @field_validator("env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        # A value that cannot be a variable name is probably the secret typed into the wrong place:
        # say so without repeating it.
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("not an environment variable name (letters, digits, _): give the variable's "
                             "name there, never the secret itself")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file' (literal secrets are not allowed)")
        return self

    def resolve(self) -> SecretStr:
        """Read the secret now. Messages never repeat the value nor the reference (an ``env:`` that holds
        the secret itself must not be echoed); the caller prefixes the field name."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError("the environment variable named by its {env: …} is not set")
        else:
            assert self.file is not None
            try:
                value = self.file.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigError(f"cannot read the file named by its {{file: …}}: {why}") from None
        if not value:
            raise ConfigError("the secret it refers to is empty")
        logs.register_secret(value)  # redacted from every log record from now on
        return SecretStr(value)

    def describe(self) -> str:
        """Which kind of reference, for messages: never the name or path itself."""
        return "{env: …}" if self.env else "{file: …}"


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
        problem = host_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _range_has_no_name(self) -> Host:
        if is_cidr(self.address) and self.name:
            raise ValueError("a CIDR range is many hosts: it cannot have one 'name'")
        return self


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

    vulnerabilities: bool = Field(default=True, description="Heartbleed / CCS injection / client renegotiation "
                                  "tests (sslyze's method, in-process)")
    robot: bool = Field(default=False, description="sslyze ROBOT test (seconds per endpoint)")
    sslv2_sslv3: bool = True
    connections_per_endpoint: int = Field(default=4, ge=1, le=64,
                                          description="small DICOM servers have few threads; stay below them")


class ClientCertOptions(_Strict):
    """Defective client certificates presented to the product's TLS servers (issue 15 item 6). Generated
    per run in memory; nothing is written to disk. Read-only: one handshake per certificate."""

    enabled: bool = True
    signing_ca_cert: Path | None = Field(
        default=None, description="a test CA the product trusts (PEM): signs the expired, not-yet-valid and "
        "wrong-key-usage certificates so that each has only that defect; without it they come from an unknown CA")
    signing_ca_key: Path | None = Field(default=None, description="that CA's private key (PEM)")
    signing_ca_key_password: SecretRef | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> ClientCertOptions:
        if (self.signing_ca_cert is None) != (self.signing_ca_key is None):
            raise ValueError("give both signing_ca_cert and signing_ca_key, or neither")
        return self


class NtpOptions(_Strict):
    """NTP queries (RFC 5905) with an ordinary UDP socket; the control queries are read-only."""

    enabled: bool = True
    ports: list[Port] = Field(default_factory=lambda: [123], description="UDP ports to query on every host")
    control_queries: bool = Field(default=True, description="mode-6 READVAR and mode-7 MON_GETLIST (read-only)")
    nts_ke_port: Port | None = Field(default=4460, description="NTS-KE (RFC 8915) TCP port; null: not tried")


class DicomwebAuth(_Strict):
    """Credentials for the DICOMweb checks, by reference only: a bearer token, or basic auth."""

    bearer_token: SecretRef | None = None
    username: str | None = None
    password: SecretRef | None = None

    @model_validator(mode="after")
    def _one_scheme(self) -> DicomwebAuth:
        basic = self.username is not None or self.password is not None
        if (self.bearer_token is not None) == basic or (basic and (self.username is None or self.password is None)):
            raise ValueError("give either bearer_token, or username and password")
        return self


class DicomwebOptions(_Strict):
    """DICOMweb capability checks (PS3.18) on HTTP(S) endpoints: statuses only, nothing stored or retrieved."""

    enabled: bool = True
    base_paths: list[str] = Field(
        default_factory=lambda: ["/dicom-web", "/dicomweb", "/wado-rs", "/rs"], min_length=1, max_length=20,
        description="base URL paths tried in order; the first that does not answer 404 is audited")
    auth: DicomwebAuth | None = None

    @field_validator("base_paths")
    @classmethod
    def _absolute(cls, v: list[str]) -> list[str]:
        if any(not p.startswith("/") or any(c in p for c in "?#\r\n ") for p in v):
            raise ValueError("base paths are absolute URL paths ('/dicom-web'), without query or spaces")
        return v


class LdapOptions(_Strict):
    """LDAP checks (RFC 4511-4513): root DSE and anonymous bind by default; a simple bind over plaintext only
    with an explicitly configured test account (credentials are never guessed)."""

    enabled: bool = True
    ports: list[Port] = Field(default_factory=lambda: [389], description="plaintext LDAP ports (StartTLS)")
    ldaps_ports: list[Port] = Field(default_factory=lambda: [636], description="LDAP-over-TLS ports")
    bind_dn: str | None = Field(default=None, description="a test account for the plaintext simple-bind check")
    bind_password: SecretRef | None = None

    @model_validator(mode="after")
    def _account_whole(self) -> LdapOptions:
        if (self.bind_dn is None) != (self.bind_password is None):
            raise ValueError("give both bind_dn and bind_password, or neither")
        return self


class DnsOptions(_Strict):
    """DNS server checks (RFC 1035) on the audited hosts: open resolver, DNSSEC (DO bit), zone transfer."""

    enabled: bool = True
    ports: list[Port] = Field(default_factory=lambda: [53])
    recursion_name: str = Field(
        default="dcsaudit-recursion-check.example.", min_length=3, max_length=253,
        description="a name outside the product's zones asked with recursion desired (RFC 2606 .example: it "
        "exists nowhere; a resolver that recurses answers NXDOMAIN with RA set)")
    zone: str | None = Field(default=None, description="the product's own zone: SOA with DNSSEC, and AXFR (refusal "
                             "expected)")


class DnsSdOptions(_Strict):
    """DNS-SD lookup of the product's DICOM services (RFC 6763; "_dicom._tcp" / "_dicom-tls._tcp"): needs the
    DNS server to ask and the domain the product advertises in; off until both are configured."""

    server: str | None = Field(default=None, description="address of the DNS server to ask")
    port: Port = 53
    domain: str | None = Field(default=None, description="DNS-SD domain, e.g. 'hospital.example.'")

    @field_validator("server")
    @classmethod
    def _server(cls, v: str | None) -> str | None:
        problem = host_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _both(self) -> DnsSdOptions:
        if (self.server is None) != (self.domain is None):
            raise ValueError("give both server and domain, or neither")
        return self


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
    client_certs: ClientCertOptions = Field(default_factory=ClientCertOptions)
    ntp: NtpOptions = Field(default_factory=NtpOptions)
    dicomweb: DicomwebOptions = Field(default_factory=DicomwebOptions)
    ldap: LdapOptions = Field(default_factory=LdapOptions)
    dns: DnsOptions = Field(default_factory=DnsOptions)
    dns_sd: DnsSdOptions = Field(default_factory=DnsSdOptions)


class CollectorOptions(_Strict):
    """The syslog collector run during a scan (RFC 5425/5426, PS3.15 A.6/A.7)."""

    enabled: bool = False
    bind: str = "127.0.0.1"
    tls_port: Port = 6514
    udp_port: Port | None = 514
    cert_file: Path | None = Field(default=None, description="collector certificate; self-signed when absent")
    key_file: Path | None = None
    window_seconds: float = Field(default=5.0, ge=0, le=600)


class NotifyOptions(_Strict):
    """Drift notifications (issue 13): after the run is stored, a regression against the previous stored run
    of the deployment is sent to the audit record repository (PS3.15 A.5.3.11 Security Alert over RFC 5425
    TLS) and/or POSTed as JSON to a webhook; each bounded by ``timeout`` and never fatal to the run."""

    on: Literal["regression", "change"] = Field(default="regression", description="notify on a regression only, "
                                                "or on any change")
    webhook: SecretRef | None = Field(default=None, description="{env: …} or {file: …} holding the http(s) URL "
                                      "(a webhook URL often carries a token)")
    audit_repository: str | None = Field(default=None, description="HOST:PORT of the audit record repository "
                                         "(syslog over TLS, RFC 5425)")
    audit_ca_file: Path | None = Field(default=None, description="CA validating the repository (default: system CAs)")
    timeout: float = Field(default=5.0, gt=0, le=30, description="seconds, per notification")

    @field_validator("audit_repository")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d{1,5}", v):
            raise ValueError("HOST:PORT expected ([v6 address]:PORT for IPv6)")
        return v


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
    notify: NotifyOptions = Field(default_factory=NotifyOptions, description="drift notifications (issue 13)")
    redact: list[str] = Field(default_factory=list, description="more strings --redact replaces in every output "
                              "(besides the deployment's addresses, host names and AE titles), e.g. a site name")

    @field_validator("declared", mode="before")
    @classmethod
    def _declarations_as_text(cls, v: Any) -> Any:
        # A table left empty in the skeleton (all keys commented out) is no declaration; numbers are text.
        if isinstance(v, dict):
            return {str(t): {str(k): (str(x) if isinstance(x, int | float) and not isinstance(x, bool) else x)
                             for k, x in (rows or {}).items()} if isinstance(rows, dict) or rows is None else rows
                    for t, rows in v.items()}
        return v

    @field_validator("declared")
    @classmethod
    def _declarations_match_the_annex(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        # A declaration that addresses no cell would vanish from the annex without a word.
        from dcsaudit.annex.declarations import problems  # pure; imported here to keep config light

        found = problems(v)
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise ValueError(found[0] + more)
        return v

    @model_validator(mode="after")
    def _hosts_and_aes_unique(self) -> DeploymentConfig:
        seen: dict[str, int] = {}
        for i, h in enumerate(self.hosts):
            for label in filter(None, (h.address, h.name)):
                if label in seen:
                    raise ValueError(f"hosts.{i}: {label!r} is already hosts.{seen[label]}")
                seen[label] = i
        aes: dict[tuple[str, str, int], int] = {}
        for i, ae in enumerate(self.application_entities):
            if ae.host not in seen:
                hint = did_you_mean(ae.host, seen)
                raise ValueError(f"application_entities.{i}.host: {ae.host!r} is not one of the configured hosts{hint}")
            if is_cidr(self.address_of(ae.host)):
                raise ValueError(f"application_entities.{i}.host: {ae.host!r} is a CIDR range; an AE lives on one host")
            # The same AE twice doubles every probe and finding; titles are compared as PS3.5 does
            # (leading and trailing spaces are not significant).
            key = (self.address_of(ae.host), ae.ae_title.strip(), ae.port)
            if key in aes:
                raise ValueError(f"application_entities.{i}: duplicate of application_entities.{aes[key]} "
                                 "(same AE title, host and port)")
            aes[key] = i
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


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None``, ``list[X]`` or ``Annotated[X, …]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def valid_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys a mapping at ``loc`` (a pydantic error location) may hold; [] for free-form mappings."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def first_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """One line: the field, the problem, and for an unknown key the closest valid one."""
    errors = exc.errors()
    # A misspelt key also makes the key it was meant to be "missing": name the typo, it is the cause.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden" and loc:
        keys = valid_keys(root, loc[:-1])
        hint = did_you_mean(str(loc[-1]), keys)
        if not hint and keys:
            hint = f" (valid keys: {', '.join(keys)})"
        msg = f"unknown key{hint}"
    elif err["type"] == "missing" and loc:
        msg = "required key missing"
    where = ".".join(str(p) for p in loc)
    return f"{where}: {msg}" if where else msg


def _first_error(exc: ValidationError) -> str:
    return first_error(exc, DeploymentConfig)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong with a YAML text and where (line, column), in one line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = " ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x)
    return f"{where}not valid YAML: {what or type(exc).__name__}".replace("\n", " ")


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
        raise ConfigError(f"{path}: {yaml_problem(exc)}") from None
    return parse_config(data, str(path))
