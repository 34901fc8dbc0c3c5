"""TLS audit (PS3.15 B.12/B.13, RFC 9325): raw-ClientHello enumeration, certificates, client auth (facts; the verdicts are
``dcsaudit.rules.tls_profiles``'s)."""

from dcsaudit.probes.tls.audit import TlsAuditOptions, audit_tls
from dcsaudit.probes.tls.wire import ClientHelloInfo, parse_client_hello

__all__ = ["ClientHelloInfo", "TlsAuditOptions", "audit_tls", "parse_client_hello"]
