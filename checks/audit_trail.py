"""Checks on the audit trail the product sent to dcsaudit's collector (PS3.15 A.5-A.7, RFC 5424/5425/5426).

Pure functions over ``AuditData.audit_trail`` (collected by ``dcsaudit.listeners.syslog_collector`` and
correlated by ``dcsaudit.auditmsg.correlate``). Test messages sent to the product's own collector are
typed results on its endpoints (``Endpoint.syslog_send``), never read from evidence data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from dcsaudit.checks.base import AuditData, Verdict, check
from dcsaudit.models.audit import AuditMessage, AuditTrail


def _host(peer: str) -> str:
    """'10.0.0.5:51514' -> '10.0.0.5'; '[::1]:6000' -> '::1'."""
    if peer.startswith("["):
        return peer[1:].split("]", 1)[0]
    return peer.rsplit(":", 1)[0] if peer.count(":") == 1 else peer


def _by_sender(trail: AuditTrail) -> dict[str, list[AuditMessage]]:
    out: dict[str, list[AuditMessage]] = defaultdict(list)
    for m in trail.messages:
        out[_host(m.peer)].append(m)
    return out


def _no_trail(data: AuditData) -> Iterator[Verdict]:
    yield Verdict("not_applicable", "*", "no audit-trail collector ran in this audit")


def _nothing(trail: AuditTrail | None) -> Verdict:
    if trail is None:
        return Verdict("not_applicable", "*", "no audit-trail collector ran in this audit")
    return Verdict("not_applicable", "*", "the collector received no audit message")


@check(id="audit.messages_valid", title="Audit messages follow PS3.15 A.5 and RFC 5424", severity="medium",
       references=["PS3.15 A.5.1", "PS3.15 A.5.2", "PS3.15 A.5.3", "PS3.15 A.6", "RFC 5424 §6"])
def messages_valid(data: AuditData) -> Iterator[Verdict]:
    trail = data.audit_trail
    if trail is None or not trail.messages:
        yield _nothing(trail)
        return
    for host, msgs in sorted(_by_sender(trail).items()):
        bad = [m for m in msgs if not m.valid]
        ev = [m.evidence for m in (bad or msgs)[:20] if m.evidence]
        if not bad:
            yield Verdict("pass", host, f"all {len(msgs)} audit messages valid (schema, A.5.3 rules, PRI, MSGID, BOM)", ev)
            continue
        reasons: dict[str, int] = defaultdict(int)
        for m in bad:
            for e in m.errors:
                reasons[e.split(":", 1)[0] + ": " + e.split(":", 1)[-1].strip()[:80]] += 1
        top = "; ".join(f"{r} (x{n})" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        yield Verdict("fail", host, f"{len(bad)} of {len(msgs)} audit messages invalid: {top}", ev)


@check(id="audit.tls_octet_counting", title="SYSLOG-TLS frames are octet-counted", severity="low",
       references=["RFC 5425 §4.3", "PS3.15 A.6"])
def tls_octet_counting(data: AuditData) -> Iterator[Verdict]:
    trail = data.audit_trail
    if trail is None:
        yield from _no_trail(data)
        return
    by_host: dict[str, list[str]] = defaultdict(list)
    ev: dict[str, list[str]] = defaultdict(list)
    for c in trail.connections:
        if c.messages:
            by_host[_host(c.peer)].extend(c.framing)
            if c.evidence:
                ev[_host(c.peer)].append(c.evidence)
    if not by_host:
        yield Verdict("not_applicable", "*", "no audit message arrived over TLS")
    for host, framings in sorted(by_host.items()):
        if "non-transparent" in framings:
            yield Verdict("fail", host, "TLS messages use non-transparent (LF) framing, not octet-counting", ev[host])
        else:
            yield Verdict("pass", host, "TLS messages are octet-counted (MSG-LEN SP SYSLOG-MSG)", ev[host])


@check(id="audit.client_certificate", title="Audit originator authenticates with a valid client certificate",
       severity="medium", references=["RFC 5425 §4.2", "PS3.15 A.6", "IHE ITI-19"])
def client_certificate(data: AuditData) -> Iterator[Verdict]:
    trail = data.audit_trail
    if trail is None:
        yield from _no_trail(data)
        return
    seen: dict[str, list[tuple[bool, bool | None, str | None]]] = defaultdict(list)
    for c in trail.connections:
        if c.handshake_ok:
            seen[_host(c.peer)].append((c.client_certificate_presented, c.client_certificate_validated, c.evidence))
    if not seen:
        yield Verdict("not_applicable", "*", "no TLS connection completed to the collector")
    for host, conns in sorted(seen.items()):
        ev = [e for _, _, e in conns if e]
        if not all(p for p, _, _ in conns):
            yield Verdict("fail", host, "the sender presented no client certificate (RFC 5425 requires mutual authentication)", ev)
        elif any(v is False for _, v, _ in conns):
            yield Verdict("fail", host, "the client certificate did not validate against the collector's CA", ev)
        elif any(v is None for _, v, _ in conns):
            yield Verdict("pass", host, "a client certificate was presented (not validated: no CA file given)", ev)
        else:
            yield Verdict("pass", host, "a client certificate was presented and validated", ev)


@check(id="audit.expected_events", title="The scan's actions produced the expected audit messages",
       severity="medium", references=["PS3.15 A.5.3", "PS3.2 N.11.2.2 Table N.11-2"])
def expected_events(data: AuditData) -> Iterator[Verdict]:
    trail = data.audit_trail
    if trail is None:
        yield from _no_trail(data)
        return
    if not trail.correlations:
        yield Verdict("not_applicable", "*", "no action of the scan is a configured audit trigger")
        return
    missing = [m for m in trail.missing_events if m.level == "expected"]
    if missing:
        names = sorted({f"{m.trigger} -> {'/'.join(m.expected_events)}" for m in missing})
        yield Verdict("fail", "*", f"{len(missing)} expected audit messages never came: {', '.join(names)[:300]}",
                      [m.action_evidence for m in missing[:20]])
    else:
        matched = [c for c in trail.correlations if c.matched_messages]
        ev = [c.action_evidence for c in matched[:20]]
        yield Verdict("pass", "*", f"{len(matched)} scan actions each produced their expected audit message", ev)


@check(id="audit.tls_transport", title="Audit messages travel over SYSLOG-TLS, not only UDP", severity="low",
       references=["RFC 5424 §5.1", "RFC 5426 §4.3", "PS3.15 A.6", "PS3.15 A.7"])
def tls_transport(data: AuditData) -> Iterator[Verdict]:
    trail = data.audit_trail
    if trail is None or not trail.messages:
        yield _nothing(trail)
        return
    for host, msgs in sorted(_by_sender(trail).items()):
        ev = [m.evidence for m in msgs[:10] if m.evidence]
        if any(m.transport == "tls" for m in msgs):
            yield Verdict("pass", host, "audit messages arrive over TLS", ev)
        else:
            yield Verdict("fail", host, "audit messages arrive over UDP only (clear text, may be truncated or lost)", ev)
