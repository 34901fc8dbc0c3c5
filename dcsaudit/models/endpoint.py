"""An audited endpoint: one port of one host and what speaks behind it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dcsaudit.models.core import Model
from dcsaudit.models.tls import TlsResult

Service = Literal["dicom", "dicom-tls", "tls", "http", "https", "syslog-tls", "syslog-udp", "ntp", "unknown"]
PortState = Literal["open", "closed", "filtered"]


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
    tls: TlsResult | None = Field(default=None, description="TLS audit (issue 3); null when not run")
    evidence: list[str] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}/{self.protocol}"
