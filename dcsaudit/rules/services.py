"""The services identification can name, and what the rest of the audit does with each.

One table shared by identification (the names it may return), the runner (which stages an endpoint
goes to) and the annex (the N.8.3 port table's wording). A new service is one row here plus the
identification that recognises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from dcsaudit.models.endpoint import Service


@dataclass(frozen=True)
class ServiceInfo:
    label: str  # as the annex's port table says it
    tls: bool = False  # the TLS audit examines it
    dicom: bool = False  # the association audit examines it
    syslog: bool = False  # the product-collector probe sends to it


SERVICES: dict[Service, ServiceInfo] = {
    "dicom": ServiceInfo("DICOM (DIMSE, no TLS)", dicom=True),
    "dicom-tls": ServiceInfo("DICOM over TLS", tls=True, dicom=True),
    "tls": ServiceInfo("TLS (other payload)", tls=True),
    "http": ServiceInfo("HTTP"),
    "https": ServiceInfo("HTTPS", tls=True),
    "syslog-tls": ServiceInfo("Syslog over TLS (RFC 5425)", tls=True, syslog=True),
    "syslog-udp": ServiceInfo("Syslog over UDP (RFC 5426)", syslog=True),
    "ntp": ServiceInfo("NTP"),
    "unknown": ServiceInfo("unidentified"),
}
assert set(SERVICES) == set(get_args(Service)), "every Service literal needs a row"

TLS_SERVICES = frozenset(name for name, s in SERVICES.items() if s.tls)
DICOM_SERVICES = frozenset(name for name, s in SERVICES.items() if s.dicom)
SYSLOG_SERVICES = frozenset(name for name, s in SERVICES.items() if s.syslog)
