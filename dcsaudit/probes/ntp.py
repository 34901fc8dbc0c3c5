"""NTP server facts (RFC 5905) with an ordinary UDP socket: no raw sockets, no privileges.

One mode-3 client query gives version, stratum, leap indicator, reference id, root delay and dispersion
(RFC 5905 §7.3). Two read-only control queries tell whether the server answers the management
protocols that have been used for reflection/amplification: mode 6 READVAR (RFC 9327 §2, the "ntpq rv"
query) and mode 7 MON_GETLIST_1 ("monlist", CVE-2013-5211). Neither changes anything on the server.
NTS-KE (RFC 8915 §4) is a TLS 1.3 handshake with ALPN "ntske/1" on TCP 4460; no key exchange request is
sent. Fills the NTP rows of PS3.2 N.8-1 and N.11.1.1 (Basic Time Synchronization).
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

from dcsaudit.context import AuditContext
from dcsaudit.models.core import Reason
from dcsaudit.models.network import NtpResult

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
MODE6_READVAR = struct.pack(">BBHHHHH", (2 << 3) | 6, 2, 1, 0, 0, 0, 0)  # VN 2, mode 6, opcode 2, seq 1
MODE7_MONLIST = bytes([(2 << 3) | 7, 0, 3, 42]) + bytes(44)  # VN 2, mode 7, impl XNTPD, MON_GETLIST_1
MAX_DATAGRAMS = 64  # answers read per control query: a monlist answer can be hundreds; a few show it


def _ntp_time(t: float) -> bytes:
    secs = int(t) + NTP_EPOCH_OFFSET
    return struct.pack(">II", secs & 0xFFFFFFFF, int((t % 1) * 2**32) & 0xFFFFFFFF)


def _from_ntp(raw: bytes) -> float:
    secs, frac = struct.unpack(">II", raw)
    return float(secs - NTP_EPOCH_OFFSET + frac / 2**32)


def _short(raw: bytes) -> float:
    """NTP short format (16.16 seconds) in milliseconds."""
    (v,) = struct.unpack(">I", raw)
    return round(float(v) / 65536 * 1000, 3)


def _refid(stratum: int, raw: bytes) -> str:
    if stratum <= 1:  # kiss code (stratum 0) or reference clock name (stratum 1), ASCII
        return raw.rstrip(b"\0").decode("ascii", "replace") or "(empty)"
    return ".".join(str(b) for b in raw)  # IPv4 of the upstream, or a hash of an IPv6 one


@dataclass
class ClientAnswer:
    ok: bool
    detail: str
    fields: dict[str, object] = field(default_factory=dict)


def _socket(host: str, port: int, timeout: float) -> socket.socket:
    """A connected UDP socket: an ICMP port-unreachable then ends the wait at once (ECONNREFUSED)
    instead of after the timeout."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except OSError:
        s.close()
        raise
    return s


def client_query(host: str, port: int, timeout: float) -> ClientAnswer:
    """One mode-3 query (blocking). The answer must echo our transmit timestamp (RFC 5905 §8)."""
    sent_at = time.time()
    xmt = _ntp_time(sent_at)[:4] + os.urandom(4)  # random low bits: an answer must echo them
    packet = bytes([(0 << 6) | (4 << 3) | 3]) + bytes(39) + xmt
    try:
        s = _socket(host, port, timeout)
    except OSError as exc:
        return ClientAnswer(False, f"no NTP server: {exc.strerror or type(exc).__name__}")
    with s:
        try:
            s.send(packet)
            data = s.recv(1024)
        except TimeoutError:
            return ClientAnswer(False, f"no answer within {timeout:.1f} s")
        except OSError as exc:  # ICMP port unreachable surfaces as ECONNREFUSED on the next recv
            return ClientAnswer(False, f"no NTP server: {exc.strerror or type(exc).__name__}")
    got_at = time.time()
    if len(data) < 48:
        return ClientAnswer(False, f"answer of {len(data)} byte(s) is too short for NTP")
    li, vn, mode = data[0] >> 6, (data[0] >> 3) & 7, data[0] & 7
    if mode != 4 or data[24:32] != xmt:
        return ClientAnswer(False, f"not an NTP server answer to our query (mode {mode}, origin timestamp "
                            f"{'matches' if data[24:32] == xmt else 'differs'})")
    stratum = data[1]
    recv_ts, xmit_ts = _from_ntp(data[32:40]), _from_ntp(data[40:48])
    offset = ((recv_ts - sent_at) + (xmit_ts - got_at)) / 2  # RFC 5905 §8 clock offset
    return ClientAnswer(True, "answered", {
        "version": vn, "mode": mode, "stratum": stratum, "leap": li,
        "reference_id": _refid(stratum, data[12:16]), "root_delay_ms": _short(data[4:8]),
        "root_dispersion_ms": _short(data[8:12]), "precision": struct.unpack(">b", data[3:4])[0],
        "offset_ms": round(offset * 1000, 3)})


def control_query(host: str, port: int, request: bytes, timeout: float, mode: int) -> tuple[bool, int, int]:
    """(answered, datagrams, bytes) for one read-only control request (blocking, bounded)."""
    total = count = 0
    try:
        s = _socket(host, port, timeout)
    except OSError:
        return False, 0, 0
    with s:
        try:
            s.send(request)
            deadline = time.monotonic() + timeout
            while count < MAX_DATAGRAMS:
                s.settimeout(max(0.01, min(deadline - time.monotonic(), 0.5 if count else timeout)))
                data = s.recv(4096)
                if len(data) >= 2 and (data[0] & 7) == mode and (data[0 if mode == 7 else 1] & 0x80):
                    count += 1
                    total += len(data)
                if time.monotonic() >= deadline:
                    break
        except (TimeoutError, OSError):
            pass
    return count > 0, count, total


def nts_ke(host: str, port: int, timeout: float) -> tuple[bool | None, str]:
    """A TLS handshake offering ALPN ntske/1 (RFC 8915 §4); no NTS-KE request is sent."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["ntske/1"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, ctx.wrap_socket(raw) as s:
            alpn = s.selected_alpn_protocol()
            version = s.version()
    except ConnectionRefusedError:
        return False, f"TCP {port} refused"
    except TimeoutError:
        return None, f"TCP {port}: no answer within {timeout:.1f} s"
    except (ssl.SSLError, OSError) as exc:
        return False, f"TCP {port}: no NTS-KE TLS server ({getattr(exc, 'reason', None) or type(exc).__name__})"
    if alpn == "ntske/1":
        return True, f"TCP {port}: {version} handshake with ALPN ntske/1"
    return False, f"TCP {port}: TLS server without the ntske/1 ALPN ({alpn or 'none'})"


async def probe_ntp(ctx: AuditContext, host: str, port: int) -> NtpResult:
    """All NTP facts of one host and UDP port. Never raises for network conditions."""
    o = ctx.config.scan.ntp
    t = ctx.config.scan.timeouts.read
    target = f"{host}:{port}/udp"
    start = time.perf_counter()
    a = await ctx.limiter.run_blocking(host, client_query, host, port, t)
    ev = ctx.evidence.add("ntp.query", target, a.ok, f"NTP mode-3 query: {a.detail}"
                          + (f" (NTPv{a.fields['version']}, stratum {a.fields['stratum']}, leap {a.fields['leap']}, "
                             f"reference {a.fields['reference_id']})" if a.ok else ""),
                          reason=None if a.ok else Reason.TIMEOUT if "no answer" in a.detail else
                          Reason.REFUSED if a.detail.startswith("no NTP server") else Reason.PROTOCOL_ERROR,
                          data=dict(a.fields), duration_ms=(time.perf_counter() - start) * 1000)
    if not a.ok:
        return NtpResult(answered=False, error=a.detail, evidence=[ev.id])
    evidence = [ev.id]
    update: dict[str, object] = dict(a.fields)
    if o.control_queries:
        ok6, n6, b6 = await ctx.limiter.run_blocking(host, control_query, host, port, MODE6_READVAR, t, 6)
        update["mode6_answers"] = ok6
        update["mode6_amplification"] = round(b6 / len(MODE6_READVAR), 1) if ok6 else None
        evidence.append(ctx.evidence.add(
            "ntp.control", target, True, f"mode-6 READVAR (read-only): {f'{n6} answer(s), {b6} bytes' if ok6 else 'no answer'}",
            data={"mode": 6, "answers": n6, "bytes": b6}).id)
        ok7, n7, b7 = await ctx.limiter.run_blocking(host, control_query, host, port, MODE7_MONLIST, t, 7)
        update["mode7_answers"] = ok7
        evidence.append(ctx.evidence.add(
            "ntp.control", target, True, f"mode-7 MON_GETLIST (monlist, read-only): "
            f"{f'{n7} answer(s), {b7} bytes' if ok7 else 'no answer'}", data={"mode": 7, "answers": n7, "bytes": b7}).id)
    if o.nts_ke_port is not None:
        ok, detail = await ctx.limiter.run_blocking(host, nts_ke, host, o.nts_ke_port, ctx.config.scan.timeouts.connect)
        update["nts_ke"] = ok
        # Filed under the NTP endpoint it belongs to; the summary names the TCP port.
        evidence.append(ctx.evidence.add("ntp.nts_ke", target, ok is not None,
                                         f"NTS-KE: {detail}", reason=Reason.TIMEOUT if ok is None else None).id)
    return NtpResult.model_validate({"answered": True, "evidence": evidence, **update})
