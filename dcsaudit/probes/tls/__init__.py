"""TLS audit (issue 3): raw-ClientHello enumeration, certificates, client auth, PS3.15 profile verdicts."""

from dcsaudit.probes.tls.audit import TlsAuditOptions, audit_tls
from dcsaudit.probes.tls.wire import ClientHelloInfo, parse_client_hello

__all__ = ["ClientHelloInfo", "TlsAuditOptions", "audit_tls", "parse_client_hello"]
