"""DNS server facts (RFC 1035 / RFC 2181) with dnspython: open resolver, EDNS and DNSSEC, zone transfer.

Queries only: a recursive query for a name outside the product's zones (``scan.dns.recursion_name``, by
default under the reserved .example TLD, RFC 2606) shows whether the server recurses for anyone (an open
resolver, RFC 5358); the same query over TCP; a SOA query with the DO bit (RFC 3225, RFC 4035 §3.2.1)
shows EDNS and DNSSEC support; with ``scan.dns.zone`` an AXFR (RFC 5936) shows whether the zone is given
away — only the first answer message is read and no record is kept. Fills the DNS rows of PS3.2 N.8-1.

In a real audit the product's resolver may forward the recursion query upstream (that is what is being
tested); tests point it at loopback peers only.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Literal

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.network import DnsResult

PROBE = "dns"


def _ask(host: str, port: int, name: str, rdtype: str, timeout: float, *, tcp: bool = False,
         dnssec: bool = False) -> tuple[dns.message.Message | None, str]:
    """One query (blocking). (answer or None, detail)."""
    q = dns.message.make_query(name, rdtype, want_dnssec=dnssec)
    try:
        if tcp:
            r = dns.query.tcp(q, host, port=port, timeout=timeout)
        else:
            # A connected, non-blocking UDP socket (as dnspython wants it): an ICMP port-unreachable ends
            # the wait at once instead of after the timeout.
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect((host, port))
                r = dns.query.udp(q, host, port=port, timeout=timeout, sock=sock)
    except dns.exception.Timeout:
        return None, f"no answer within {timeout:.1f} s"
    except ConnectionRefusedError:
        return None, "no DNS server (ICMP port unreachable)"
    except (OSError, dns.exception.DNSException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return r, dns.rcode.to_text(r.rcode())


def recursion(host: str, port: int, name: str, timeout: float, tcp: bool = False) -> dict[str, object]:
    r, detail = _ask(host, port, name, "A", timeout, tcp=tcp)
    if r is None:
        return {"answered": False, "detail": detail}
    ra = bool(r.flags & dns.flags.RA)
    rcode = r.rcode()
    # A forwarder passes its upstream's AA flag on: the answer to a name outside the product's zones, with
    # RA set, is recursion whatever AA says.
    recursed = ra and rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and (bool(r.answer) or rcode == dns.rcode.NXDOMAIN)
    return {"answered": True, "ra": ra, "open": recursed, "rcode": detail, "answers": len(r.answer),
            "detail": f"{detail}, RA {'set' if ra else 'clear'}, {len(r.answer)} answer RRset(s)"}


def dnssec(host: str, port: int, zone: str, timeout: float) -> dict[str, object]:
    r, detail = _ask(host, port, zone, "SOA", timeout, dnssec=True)
    if r is None:
        return {"answered": False, "detail": detail}
    sigs = any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in r.answer)
    return {"answered": True, "edns": r.edns >= 0, "do": bool(r.ednsflags & dns.flags.DO), "rrsig": sigs,
            "detail": f"{detail}, EDNS {'yes' if r.edns >= 0 else 'no'}, DO {'echoed' if r.ednsflags & dns.flags.DO else 'not echoed'}, "
                      f"RRSIG {'returned' if sigs else 'none'}"}


def axfr(host: str, port: int, zone: str, timeout: float) -> tuple[str | None, str]:
    """The first message of a zone transfer over TCP; nothing of the zone is kept."""
    r, detail = _ask(host, port, zone, "AXFR", timeout, tcp=True)
    if r is None:
        return None, detail
    starts = bool(r.answer) and r.answer[0].rdtype == dns.rdatatype.SOA
    if r.rcode() == dns.rcode.NOERROR and starts:
        return "allowed", f"{detail}: the transfer started (first message holds {sum(len(s) for s in r.answer)} record(s))"
    return "refused", f"{detail} without the zone's SOA: no transfer" if r.rcode() == dns.rcode.NOERROR else detail


async def probe_dns(ctx: AuditContext, host: str, port: int, *, tcp_open: bool) -> DnsResult:
    """DNS facts of one host and port. Never raises for network conditions."""
    o = ctx.config.scan.dns
    t = ctx.config.scan.timeouts.read
    target = f"{host}:{port}/udp"
    run = ctx.limiter.run_blocking
    start = time.perf_counter()
    rec = await run(host, recursion, host, port, o.recursion_name, t)
    ev = ctx.evidence.add(f"{PROBE}.recursion", target, bool(rec["answered"]),
                          f"recursive query for {o.recursion_name} (outside the product's zones): {rec['detail']}",
                          reason=None if rec["answered"] else Reason.REFUSED if "unreachable" in str(rec["detail"])
                          else Reason.TIMEOUT, data=rec,
                          duration_ms=(time.perf_counter() - start) * 1000)
    if not rec["answered"]:
        return DnsResult(answers_udp=False, error=str(rec["detail"]), evidence=[ev.id])
    evidence = [ev.id]
    update: dict[str, object] = {"recursion_available": rec["ra"], "open_resolver": rec["open"],
                                 "recursion_detail": rec["detail"], "zone": o.zone}
    if tcp_open:
        rt = await run(host, recursion, host, port, o.recursion_name, t, True)
        update["answers_tcp"] = bool(rt["answered"])
        evidence.append(ctx.evidence.add(f"{PROBE}.tcp", f"{host}:{port}/tcp", bool(rt["answered"]),
                                         f"the same query over TCP: {rt['detail']}").id)
    sec = await run(host, dnssec, host, port, o.zone or ".", t)
    if sec["answered"]:
        update.update(edns=sec["edns"], dnssec_do=sec["do"], dnssec_signatures=sec["rrsig"] if o.zone else None)
    evidence.append(ctx.evidence.add(f"{PROBE}.dnssec", target, bool(sec["answered"]),
                                     f"SOA {o.zone or '.'} with the DO bit: {sec['detail']}").id)
    if o.zone:
        outcome, detail = await run(host, axfr, host, port, o.zone, t)
        update.update(axfr=outcome, axfr_detail=detail)
        evidence.append(ctx.evidence.add(f"{PROBE}.axfr", f"{host}:{port}/tcp", outcome is not None,
                                         f"AXFR {o.zone}: {outcome or 'no answer'} — {detail}").id)
    return DnsResult.model_validate({"answers_udp": True, "evidence": evidence, **update})


# DNS-SD (RFC 6763 §4: PTR <type>.<domain> → instances; §5: SRV and TXT of each instance).
DICOM_SERVICE_TYPES: tuple[Literal["_dicom._tcp", "_dicom-tls._tcp"], ...] = ("_dicom._tcp", "_dicom-tls._tcp")
MAX_INSTANCES = 32  # per service type: bounded, a DICOM deployment advertises a handful


@dataclass(frozen=True)
class Advert:
    service_type: Literal["_dicom._tcp", "_dicom-tls._tcp"]
    instance: str
    target: str
    port: int
    txt: dict[str, str]
    addresses: list[str]


def _txt(rdata: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in rdata.strings:
        key, _, value = raw.decode("utf-8", "replace").partition("=")
        if key:
            out.setdefault(key.lower(), value)  # RFC 6763 §6.4: keys are case-insensitive, first wins
    return out


def browse(server: str, port: int, domain: str, timeout: float) -> tuple[list[Advert], list[str]]:
    """All DICOM adverts in ``domain`` (blocking, bounded). (adverts, notes on what failed)."""
    adverts: list[Advert] = []
    notes: list[str] = []
    domain = domain.rstrip(".") + "."
    for stype in DICOM_SERVICE_TYPES:
        r, detail = _ask(server, port, f"{stype}.{domain}", "PTR", timeout)
        if r is None:
            notes.append(f"PTR {stype}.{domain}: {detail}")
            continue
        instances = [str(rd.target) for rrset in r.answer if rrset.rdtype == dns.rdatatype.PTR for rd in rrset]
        for inst in instances[:MAX_INSTANCES]:
            srv, d1 = _ask(server, port, inst, "SRV", timeout)
            txt, _ = _ask(server, port, inst, "TXT", timeout)
            srvs = [rd for rrset in (srv.answer if srv else []) if rrset.rdtype == dns.rdatatype.SRV for rd in rrset]
            if not srvs:
                notes.append(f"SRV {inst}: {d1 if srv is None else 'no SRV record'}")
                continue
            pairs: dict[str, str] = {}
            for rrset in (txt.answer if txt else []):
                if rrset.rdtype == dns.rdatatype.TXT:
                    for rd in rrset:
                        pairs.update({k: v for k, v in _txt(rd).items() if k not in pairs})
            for rd in srvs:
                target = str(rd.target)
                addrs: list[str] = []
                for rdtype in ("A", "AAAA"):
                    a, _ = _ask(server, port, target, rdtype, timeout)
                    addrs += [rdata.address for rrset in (a.answer if a else []) if rrset.rdtype in
                              (dns.rdatatype.A, dns.rdatatype.AAAA) for rdata in rrset]
                adverts.append(Advert(stype, inst, target, int(rd.port), pairs, addrs))
    return adverts, notes
