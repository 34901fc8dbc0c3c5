"""LDAP / LDAPS facts (RFC 4511, RFC 4512 §5.1, RFC 4513) with ldap3; fills PS3.2 N.8-1 (LDAP) and N.11-1.

Read-only: the root DSE (an unbound base-object search of ""), an anonymous bind (RFC 4513 §5.1.1), and —
only with an explicitly configured test account — a simple bind without TLS, to see whether the server
takes a password in the clear (RFC 4513 §5.1.2 / §6.3.1: it should answer confidentialityRequired).
StartTLS (RFC 4513 §3), when the root DSE offers it, is negotiated once and the session and certificate
recorded; LDAPS ports get the same facts from their TLS session. (The full TLS enumeration of LDAPS is
the TLS stage's, when identification labels the port as TLS; StartTLS is not enumerated.)
"""

from __future__ import annotations

import math
import ssl
import time
from typing import Any

from ldap3 import ANONYMOUS, BASE, SIMPLE, Connection, Server, Tls  # type: ignore[import-untyped]
from ldap3.core.exceptions import LDAPException  # type: ignore[import-untyped]

from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.network import BindOutcome, LdapResult, LdapTls
from dcsaudit.probes.tls import certificate

STARTTLS_OID = "1.3.6.1.4.1.1466.20037"
ROOT_DSE_ATTRS = ["supportedLDAPVersion", "supportedSASLMechanisms", "supportedExtension", "namingContexts",
                  "vendorName", "vendorVersion"]


def _server(host: str, port: int, ldaps: bool, connect_timeout: float) -> Server:
    # Permissive TLS: the audit records what the server offers; it does not protect data with it.
    tls = Tls(validate=ssl.CERT_NONE)
    return Server(host, port=port, use_ssl=ldaps, tls=tls, connect_timeout=connect_timeout, get_info=None)


def _connection(server: Server, read_timeout: float, **kw: Any) -> Connection:
    # ldap3 packs the receive timeout into SO_RCVTIMEO as whole seconds.
    return Connection(server, receive_timeout=max(1, math.ceil(read_timeout)), raise_exceptions=False,
                      read_only=True, **kw)


def _values(entry: dict[str, Any], name: str) -> list[str]:
    v = entry.get(name) or []
    return [str(x) for x in (v if isinstance(v, list) else [v])]


def _session(conn: Connection, host: str) -> LdapTls:
    sock = conn.socket
    if not isinstance(sock, ssl.SSLSocket):
        return LdapTls(error="no TLS session on the connection")
    der = sock.getpeercert(binary_form=True)
    cert = None
    if der:
        try:
            cert = certificate.describe(host, [der], None)
        except ValueError:
            cert = None
    c = sock.cipher()
    return LdapTls(version=sock.version(), cipher=c[0] if c else None, certificate=cert)


def root_dse(host: str, port: int, ldaps: bool, connect: float, read: float) -> tuple[dict[str, list[str]] | None, str,
                                                                                       LdapTls | None]:
    """Unbound root DSE search (blocking). (attributes or None, detail, TLS session for LDAPS)."""
    conn = _connection(_server(host, port, ldaps, connect), read)
    try:
        conn.open()
        session = _session(conn, host) if ldaps else None
        if not conn.search("", "(objectClass=*)", BASE, attributes=ROOT_DSE_ATTRS):
            return None, f"root DSE search failed: {conn.result.get('description')}", session
        if not conn.response:
            return None, "root DSE search returned no entry", session
        attrs = conn.response[0].get("attributes", {})
        return {a: _values(attrs, a) for a in ROOT_DSE_ATTRS}, "root DSE read", session
    except LDAPException as exc:
        return None, f"no LDAP answer: {type(exc).__name__}: {exc}", None
    finally:
        conn.unbind()


def bind(host: str, port: int, ldaps: bool, connect: float, read: float, dn: str | None = None,
         password: str | None = None) -> tuple[BindOutcome | None, str, int | None]:
    """One bind (blocking): anonymous when ``dn`` is None. Outcome None: no LDAP answer. Never echoes the
    password (ldap3's result holds the server's message only)."""
    kw: dict[str, Any] = {"authentication": ANONYMOUS} if dn is None else \
        {"authentication": SIMPLE, "user": dn, "password": password}
    conn = _connection(_server(host, port, ldaps, connect), read, **kw)
    try:
        conn.open()
        ok = conn.bind()
        r = conn.result or {}
        code = r.get("result")
        return ("accepted" if ok else "refused"), f"result {code} ({r.get('description')})" + (
            f": {r.get('message')}" if r.get("message") else ""), code if isinstance(code, int) else None
    except LDAPException as exc:
        return None, f"{type(exc).__name__}: {exc}", None
    finally:
        conn.unbind()


def start_tls(host: str, port: int, connect: float, read: float) -> LdapTls:
    conn = _connection(_server(host, port, False, connect), read)
    try:
        conn.open()
        if not conn.start_tls():
            return LdapTls(error=f"StartTLS refused: {(conn.result or {}).get('description')}")
        return _session(conn, host)
    except (LDAPException, OSError) as exc:
        return LdapTls(error=f"StartTLS failed: {type(exc).__name__}: {exc}")
    finally:
        conn.unbind()


async def probe_ldap(ctx: AuditContext, host: str, port: int, ldaps: bool) -> LdapResult:
    """Root DSE, anonymous bind, optional plaintext simple bind, StartTLS. Never raises for network conditions."""
    o = ctx.config.scan.ldap
    to = ctx.config.scan.timeouts
    target = f"{host}:{port}/tcp"
    run = ctx.limiter.run_blocking
    start = time.perf_counter()
    attrs, detail, session = await run(host, root_dse, host, port, ldaps, to.connect, to.read)
    ev = ctx.evidence.add("ldap.root_dse", target, attrs is not None, f"LDAP{'S' if ldaps else ''} {detail}",
                          reason=None if attrs is not None else Reason.PROTOCOL_ERROR, data=attrs or {},
                          duration_ms=(time.perf_counter() - start) * 1000)
    evidence = [ev.id]
    if attrs is None:
        return LdapResult(ldaps=ldaps, answered=False, error=detail, evidence=evidence)
    anon, anon_detail, _ = await run(host, bind, host, port, ldaps, to.connect, to.read)
    evidence.append(ctx.evidence.add("ldap.anonymous_bind", target, anon is not None,
                                     f"anonymous bind: {anon or 'no answer'} — {anon_detail}").id)
    simple: BindOutcome | None = None
    simple_detail: str | None = None
    simple_code: int | None = None
    if o.bind_dn is not None and o.bind_password is not None and not ldaps:
        pw = o.bind_password.resolve().get_secret_value()
        simple, simple_detail, simple_code = await run(host, bind, host, port, False, to.connect, to.read, o.bind_dn, pw)
        evidence.append(ctx.evidence.add(
            "ldap.simple_bind", target, simple is not None,
            f"simple bind of the configured test account without TLS: {simple or 'no answer'} — {simple_detail}").id)
    offered = STARTTLS_OID in attrs["supportedExtension"]
    if not ldaps and offered:
        session = await run(host, start_tls, host, port, to.connect, to.read)
        evidence.append(ctx.evidence.add(
            "ldap.starttls", target, session.error is None,
            f"StartTLS: {session.error or f'{session.version} {session.cipher}'}",
            reason=Reason.TLS_FAILURE if session.error else None).id)
    versions = [int(v) for v in attrs["supportedLDAPVersion"] if v.isdigit()]
    vendor = " ".join(attrs["vendorName"] + attrs["vendorVersion"]) or None
    return LdapResult(ldaps=ldaps, answered=True, versions=versions, sasl_mechanisms=attrs["supportedSASLMechanisms"],
                      starttls_offered=None if ldaps else offered, naming_contexts=attrs["namingContexts"],
                      vendor=vendor, anonymous_bind=anon, anonymous_bind_detail=anon_detail,
                      simple_bind_plaintext=simple, simple_bind_result=simple_code,
                      simple_bind_detail=simple_detail, tls=session, evidence=evidence)
