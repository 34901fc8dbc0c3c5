"""Port inventory (N.8.3): which TCP and UDP ports of each host are open, closed or filtered.

nmap does the TCP connect scan (through python-nmap) because it is fast, well understood by security
teams and handles filtered ports properly. We never ask nmap for ``-sV``: it takes minutes and does
not recognise DICOM; identification speaks the protocols itself (``identify.py``). When nmap is
missing or disabled, an asyncio connect scan gives the same three states. UDP needs raw sockets, so
it runs only with privileges, and its absence is recorded as evidence rather than silently skipped.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import socket
import struct
import time
from collections.abc import Iterable

from dcsaudit.config import Host
from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.endpoint import Endpoint, PortState

_NMAP_STATES: dict[str, PortState] = {
    "open": "open",
    "closed": "closed",
    "filtered": "filtered",
    "unfiltered": "closed",
    "open|filtered": "filtered",
    "closed|filtered": "filtered",
}

log = logging.getLogger(__name__)


def nmap_available() -> bool:
    return shutil.which("nmap") is not None


def _port_list(ports: Iterable[int]) -> str:
    return ",".join(str(p) for p in sorted(set(ports)))


def _nmap_scan(address: str, tcp: list[int], udp: list[int], timeout: float,
               privileged: bool = False) -> dict[tuple[str, int], tuple[str, str]]:
    """Run nmap once for one host; returns (proto, port) -> (nmap state, reason). Blocking.

    With raw-socket privileges the TCP scan is a SYN scan: the product's application never sees a
    connection. A connect scan hands each open port a connection with no request, which some DICOM
    acceptors (pynetdicom) count as an association until their ARTIM timer ends.
    """
    import nmap  # python-nmap; imported here so a missing binary only affects this probe

    spec = []
    if tcp:
        spec.append("T:" + _port_list(tcp))
    if udp:
        spec.append("U:" + _port_list(udp))
    scan_types = (("-sS " if privileged else "-sT ") if tcp else "") + ("-sU " if udp else "")
    # -Pn: hospitals filter ICMP, so host discovery would wrongly skip live hosts.
    # --max-retries 1 and --host-timeout bound the scan of filtered or dead hosts.
    args = f"-n -Pn {scan_types}--max-retries 1 --host-timeout {int(timeout)}s -T4 --reason"
    if ":" in address:
        args += " -6"
    scanner = nmap.PortScanner()
    scanner.scan(hosts=address, ports=",".join(spec), arguments=args, timeout=int(timeout) + 5)
    out: dict[tuple[str, int], tuple[str, str]] = {}
    for host in scanner.all_hosts():
        for proto in ("tcp", "udp"):
            for port, info in scanner[host].get(proto, {}).items():
                out[(proto, int(port))] = (str(info.get("state", "")), str(info.get("reason", "")))
    return out


async def _connect_state(address: str, port: int, timeout: float) -> tuple[PortState, str]:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except TimeoutError:
        return "filtered", "no-response"
    except ConnectionRefusedError:
        return "closed", "conn-refused"
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "filtered", "host-unreach"
        return "filtered", exc.strerror or type(exc).__name__
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (TimeoutError, OSError):
        pass
    return "open", "syn-ack"


def _ntp_query(address: str, port: int, timeout: float) -> bytes | None:
    """NTP mode 3 client request (RFC 5905 §7.3); a mode 4 reply proves an NTP server."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(b"\x23" + bytes(47), (address, port))
        try:
            data, _ = s.recvfrom(512)
        except (TimeoutError, ConnectionRefusedError, OSError):
            return None
    return data


async def inventory_host(ctx: AuditContext, host: Host) -> list[Endpoint]:
    """All configured (or default) ports of one host with their state; never raises."""
    cfg = ctx.config
    tcp = cfg.tcp_ports_for(host)
    udp = cfg.udp_ports_for(host)
    address = host.address
    t = cfg.scan.timeouts
    endpoints: list[Endpoint] = []

    privileged = hasattr(os, "geteuid") and os.geteuid() == 0
    if udp and not privileged:
        ctx.evidence.add("ports.udp", f"{address}/udp", False,
                         "UDP inventory skipped: it needs raw sockets (run as root or with CAP_NET_RAW)",
                         reason=Reason.NOT_AVAILABLE, data={"ports": udp})
        udp = []

    results: dict[tuple[str, int], tuple[PortState, str]] = {}
    used = "connect"
    if cfg.scan.use_nmap and nmap_available():
        start = time.perf_counter()
        try:
            async with ctx.limiter.slot(address):
                raw = await asyncio.get_running_loop().run_in_executor(
                    None, _nmap_scan, address, tcp, udp, t.nmap, privileged)
            results = {k: (_NMAP_STATES.get(state, "filtered"), reason) for k, (state, reason) in raw.items()}
            used = "nmap"
            ctx.evidence.add("ports.nmap", address, True,
                             f"nmap {'SYN' if privileged else 'connect'} scan of {len(tcp)} TCP and "
                             f"{len(udp)} UDP ports",
                             duration_ms=(time.perf_counter() - start) * 1000,
                             data={"tcp": tcp, "udp": udp})
        except Exception as exc:  # nmap crashed, timed out or printed something unexpected
            ctx.evidence.add("ports.nmap", address, False, f"nmap failed ({type(exc).__name__}: {exc}); "
                             "falling back to a connect scan", reason=Reason.INTERNAL_ERROR)
    elif cfg.scan.use_nmap:
        ctx.evidence.add("ports.nmap", address, False, "nmap is not installed; using a connect scan",
                         reason=Reason.NOT_AVAILABLE)

    missing_tcp = [p for p in tcp if ("tcp", p) not in results]
    if missing_tcp:  # nmap absent, failed, or skipped ports (e.g. a name it could not resolve)
        async def one(port: int) -> None:
            async with ctx.limiter.slot(address):
                results[("tcp", port)] = await _connect_state(address, port, t.connect)
        await asyncio.gather(*(one(p) for p in missing_tcp))

    log.info("inventory of %s: %d TCP / %d UDP ports by %s, %d open", address, len(tcp), len(udp), used,
             sum(1 for state, _ in results.values() if state == "open"))
    for (proto, port), (state, reason) in sorted(results.items()):
        # The label names the scanner that produced this port's state: ports.nmap only when nmap did.
        scanner = "connect" if proto == "tcp" and port in missing_tcp else "nmap"
        ev = ctx.evidence.add(f"ports.{scanner}", f"{address}:{port}/{proto}",
                              True, f"{proto.upper()} {port} {state} ({reason})",
                              data={"state": state, "reason": reason, "scanner": scanner,
                                    # a completed TCP connection without a request: some DICOM acceptors
                                    # hold an association slot for it until their ARTIM timer fires
                                    "bare_connect": proto == "tcp" and state == "open"
                                    and not (scanner == "nmap" and privileged)})
        endpoints.append(Endpoint(host=address, port=port, protocol=proto,
                                  state=state, evidence=[ev.id]))

    # UDP services answer only to their own protocol: NTP can be confirmed, syslog cannot.
    final: list[Endpoint] = []
    for ep in endpoints:
        if ep.protocol == "udp" and ep.port == 123 and ep.state != "closed":
            async with ctx.limiter.slot(address):
                reply = await asyncio.get_running_loop().run_in_executor(None, _ntp_query, address, 123, t.read)
            if reply and len(reply) >= 48 and (reply[0] & 0x07) == 4:
                stratum = reply[1]
                (refid,) = struct.unpack(">I", reply[12:16])
                ev = ctx.evidence.add("identify.ntp", ep.key, True, f"NTP server answered (stratum {stratum})",
                                      data={"stratum": stratum, "refid": f"{refid:08x}"})
                ep = ep.model_copy(update={"state": "open", "service": "ntp", "evidence": [*ep.evidence, ev.id]})
        elif ep.protocol == "udp" and ep.port == 514 and ep.state != "closed":
            ep = ep.model_copy(update={
                "service": "syslog-udp",
                "service_detail": "no ICMP port-unreachable: consistent with an RFC 5426 receiver (UDP gives no answer)",
            })
        final.append(ep)
    return final
