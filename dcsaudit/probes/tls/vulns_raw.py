"""Heartbleed (CVE-2014-0160) and OpenSSL CCS injection (CVE-2014-0224) on raw records, as sslyze tests them.

Both follow sslyze's plugins (``heartbleed_plugin.py``, ``openssl_ccs_injection_plugin.py``) byte for byte
on the client side: the ClientHello is the one the enumeration's flight probe had accepted (a version
<= TLS 1.2 and its suites, the same SNI), plus the heartbeat extension (RFC 6520 §2) for Heartbleed.

- Heartbleed: the ClientHello is followed at once by sslyze's two HeartbeatRequests, 16381 x 0x01 (no
  padding: over-long by RFC 6520 §4's rule) and a 3-byte one, then one well-formed request of our own
  (16 x 0x02 and its padding: the control); the server's flight is read to ServerHelloDone, then its
  answer. Our 0x01 bytes coming back in a heartbeat record = vulnerable; the control's answer without
  them (it implements heartbeats and discarded the over-long ones, RFC 6520 §4), an alert, a close or a
  reset after its flight (it read our records and refused them) = not vulnerable. The control comes
  after sslyze's records, so it cannot change how the server treats them; without it, a patched
  server that still implements heartbeats (OpenSSL 1.0.1g-1.0.2, common in DICOM products) answers
  nothing and could only be undetermined.
- CCS injection: read the flight to ServerHelloDone, send an early ChangeCipherSpec and a 2-byte
  application-data record. Alert bad_record_mac (the server tried to decrypt it with keys it should
  not have) = vulnerable; any other alert, a close or a reset = not vulnerable.

Where sslyze turns a silence into "not vulnerable" we do not: a read that times out, a flight that never
reaches ServerHelloDone, an alert before it (the test never reached the server's record handling),
garbage — each is undetermined with what was seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from dcsaudit.probes.tls import wire
from dcsaudit.probes.tls.engine import Timeouts

HEARTBLEED_PAYLOAD = b"\x01" * 16381  # sslyze's; the record is then exactly 2^14 bytes long
HEARTBEAT_SHORT = b"\x01\x00\x00"
ECHO_MARK = b"\x01" * 10  # sslyze's test: this run of our payload in what comes back
CONTROL_PAYLOAD = b"\x02" * 16  # our well-formed request's payload, echoed by any heartbeat implementation
ALERT_BAD_RECORD_MAC = 20
CCS_RECORD_PAYLOAD = b"\x01"
EARLY_APP_DATA = b"\x00\x00"

Verdict = Literal["vulnerable", "not_vulnerable", "undetermined"]
Answer = Callable[["_Records", asyncio.StreamWriter, int, list[str]], Awaitable[tuple[Verdict, str]]]
Kind = Literal["records", "closed", "reset", "timeout", "garbage", "refused", "unreachable"]


@dataclass
class RawResult:
    """One test's verdict and what the wire showed (for the evidence item)."""

    verdict: Verdict
    detail: str
    sent: list[str] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def vulnerable(self) -> bool | None:
        return None if self.verdict == "undetermined" else self.verdict == "vulnerable"

    def data(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "sent": self.sent, "received": self.received}


class _Records:
    """Reads whole records with a per-read timeout and an overall deadline (a drip-feeding server that
    keeps every read alive still ends at the deadline)."""

    def __init__(self, reader: asyncio.StreamReader, t: Timeouts, deadline: float) -> None:
        self.reader, self.t, self.deadline = reader, t, deadline
        self.buf = bytearray()
        self.pending: list[tuple[int, int, bytes]] = []
        self.received: list[str] = []

    async def next(self) -> tuple[int, bytes] | tuple[Kind, str]:
        """(content type, payload), or (end kind, detail)."""
        while not self.pending:
            remaining = min(self.t.read, self.deadline - time.monotonic())
            if remaining <= 0:
                return "timeout", "the test's time bound ran out while the server was still sending"
            try:
                chunk = await asyncio.wait_for(self.reader.read(32768), remaining)
            except TimeoutError:
                late = self.deadline - time.monotonic() <= 0
                return "timeout", ("the test's time bound ran out while the server was still sending" if late
                                   else f"no answer within the read timeout ({self.t.read:g} s)")
            except (ConnectionResetError, BrokenPipeError):
                return "reset", "connection reset by the server"
            except OSError as exc:
                return "reset", f"connection error: {exc.strerror or type(exc).__name__}"
            if not chunk:
                return "closed", ("the server closed the connection" if not self.buf
                                  else "the server closed the connection inside a record")
            self.buf += chunk
            try:
                self.pending = wire.split_records(self.buf)
            except ValueError as exc:
                return "garbage", f"not a TLS record: {exc} (bytes {bytes(self.buf[:8]).hex()})"
        ct, _ver, payload = self.pending.pop(0)
        return ct, payload

    def note(self, text: str) -> None:
        if len(self.received) < 12:  # bounded: a server can send many records
            self.received.append(text)


def _alert_text(payload: bytes) -> str:
    if len(payload) < 2:
        return "a truncated alert"
    level = "fatal" if payload[0] == 2 else "warning"
    return f"alert {wire.Alert(payload[0], payload[1]).name} ({level})"


async def _flight(rec: _Records) -> tuple[int | None, str | None]:
    """Read the server's first flight to ServerHelloDone. (negotiated version, None) when it arrived,
    else (None, why not). Heartbeat records are left to the caller through ``rec.note`` + raising."""
    handshake = wire.HandshakeBuffer()
    version: int | None = None
    while True:
        got = await rec.next()
        if isinstance(got[0], str):
            kind, detail = got
            where = "before its ServerHello" if version is None else "before ServerHelloDone"
            rec.note(f"{kind} {where}")
            return None, f"{detail} {where}"
        ct, payload = got
        assert isinstance(payload, bytes)
        if ct == wire.CT_ALERT:
            rec.note(_alert_text(payload) + (" to our ClientHello" if version is None else " inside its flight"))
            return None, f"the server refused the handshake ({_alert_text(payload)}) before the test could run"
        if ct == wire.CT_HEARTBEAT:
            raise _EarlyHeartbeat(payload)
        if ct != wire.CT_HANDSHAKE:
            rec.note(f"record type {ct} inside the flight")
            return None, f"unexpected record type {ct} inside the server's flight"
        try:
            messages = handshake.feed(payload)
        except ValueError as exc:
            return None, f"unparsable handshake data: {exc}"
        for mtype, body, _raw in messages:
            if mtype == wire.HT_SERVER_HELLO:
                try:
                    sh = wire.parse_server_hello(body)
                except ValueError as exc:
                    return None, f"unparsable ServerHello: {exc}"
                version = sh.version
                rec.note(f"ServerHello {wire.version_name(sh.version)} {sh.suite_name}")
            elif mtype == wire.HT_SERVER_HELLO_DONE:
                rec.note("ServerHelloDone")
                if version is None:
                    return None, "ServerHelloDone without a ServerHello"
                return version, None


class _EarlyHeartbeat(Exception):
    def __init__(self, payload: bytes) -> None:
        self.payload = payload


async def _connect(host: str, port: int, t: Timeouts) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | str:
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), t.connect)
    except TimeoutError:
        return "connect timed out"
    except OSError as exc:
        return f"connect failed: {exc.strerror or type(exc).__name__}"


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 0.5)


def _heartbeat_answer(payload: bytes) -> str:
    kind = {1: "request", 2: "response"}.get(payload[0], f"type {payload[0]}") if payload else "empty"
    echoed = (", our 0x01 payload echoed" if ECHO_MARK in payload
              else ", our control payload echoed" if CONTROL_PAYLOAD in payload else "")
    return f"heartbeat {kind}, {len(payload)} bytes{echoed}"


async def heartbleed(host: str, port: int, spec: wire.HelloSpec, t: Timeouts, bound: float) -> RawResult:
    """sslyze's Heartbleed test on one connection. Never raises; ends within ``bound`` seconds."""
    start = time.monotonic()
    spec.heartbeat = True
    hello = wire.build_client_hello(spec)
    rv = min(spec.version, 0x0303)
    requests = (wire.heartbeat_request(rv, HEARTBLEED_PAYLOAD) + wire.heartbeat_request(rv, HEARTBEAT_SHORT)
                + wire.heartbeat_request_padded(rv, CONTROL_PAYLOAD))
    sent = [f"ClientHello {wire.version_name(spec.version)} with the heartbeat extension",
            f"HeartbeatRequest payload_length {len(HEARTBLEED_PAYLOAD)} (16381 x 0x01, no padding: over-long)",
            "HeartbeatRequest payload_length 3 (no padding)",
            "HeartbeatRequest payload_length 16 (16 x 0x02 and 16 bytes of padding: well-formed, the control)"]
    return await _run(host, port, t, start, bound, hello + requests, sent, _heartbleed_answer)


async def _heartbleed_answer(rec: _Records, writer: asyncio.StreamWriter, version: int,
                             sent: list[str]) -> tuple[Verdict, str]:
    while True:
        got = await rec.next()
        if isinstance(got[0], str):
            kind, detail = got
            rec.note(kind)
            if kind in ("closed", "reset"):
                return "not_vulnerable", f"the server ended the connection on our heartbeat requests ({detail})"
            return "undetermined", (f"no answer to the heartbeat requests: {detail} (a server that discards them "
                                    "as RFC 6520 §4 says and one that has not answered yet look alike)")
        ct, payload = got
        assert isinstance(payload, bytes)
        if ct == wire.CT_HEARTBEAT:
            rec.note(_heartbeat_answer(payload))
            if ECHO_MARK in payload:
                return "vulnerable", (f"the server echoed our over-long heartbeat ({len(payload)} bytes back): "
                                      "it reads past the request (CVE-2014-0160)")
            if payload[:1] == b"\x02" and CONTROL_PAYLOAD in payload:
                return "not_vulnerable", ("the server answered our well-formed heartbeat and not the over-long "
                                          "ones: it implements heartbeats and discards what CVE-2014-0160 echoed")
            continue
        if ct == wire.CT_ALERT:
            rec.note(_alert_text(payload))
            return "not_vulnerable", f"the server refused our heartbeat requests with {_alert_text(payload)}"
        rec.note(f"record type {ct}")
        return "undetermined", f"unexpected record type {ct} after the server's flight"


async def ccs_injection(host: str, port: int, spec: wire.HelloSpec, t: Timeouts, bound: float) -> RawResult:
    """sslyze's CCS injection test on one connection. Never raises; ends within ``bound`` seconds."""
    start = time.monotonic()
    spec.heartbeat = False
    hello = wire.build_client_hello(spec)
    sent = [f"ClientHello {wire.version_name(spec.version)}"]
    return await _run(host, port, t, start, bound, hello, sent, _ccs_answer)


async def _ccs_answer(rec: _Records, writer: asyncio.StreamWriter, version: int,
                      sent: list[str]) -> tuple[Verdict, str]:
    rv = min(version, 0x0303)  # the record layer speaks the negotiated version, as sslyze's records do
    writer.write(wire.record(wire.CT_CHANGE_CIPHER_SPEC, rv, CCS_RECORD_PAYLOAD)
                 + wire.record(wire.CT_APPLICATION_DATA, rv, EARLY_APP_DATA))
    sent += ["ChangeCipherSpec, early (before any key exchange)", "application data record, 2 bytes"]
    await writer.drain()
    while True:
        got = await rec.next()
        if isinstance(got[0], str):
            kind, detail = got
            rec.note(kind)
            if kind in ("closed", "reset"):
                return "not_vulnerable", f"the server rejected the early ChangeCipherSpec: {detail}"
            return "undetermined", f"no answer to the early ChangeCipherSpec: {detail}"
        ct, payload = got
        assert isinstance(payload, bytes)
        if ct == wire.CT_ALERT:
            rec.note(_alert_text(payload))
            if len(payload) >= 2 and payload[1] == ALERT_BAD_RECORD_MAC:
                return "vulnerable", ("alert bad_record_mac: the server accepted the early ChangeCipherSpec and "
                                      "tried to decrypt our record with keys it should not have (CVE-2014-0224)")
            return "not_vulnerable", f"the server rejected the early ChangeCipherSpec with {_alert_text(payload)}"
        rec.note(f"record type {ct}")
        return "undetermined", f"unexpected record type {ct} after the early ChangeCipherSpec"


async def _run(host: str, port: int, t: Timeouts, start: float, bound: float, first: bytes, sent: list[str],
               answer: Answer) -> RawResult:
    opened = await _connect(host, port, t)
    if isinstance(opened, str):
        return RawResult("undetermined", opened, elapsed_ms=(time.monotonic() - start) * 1000)
    reader, writer = opened
    rec = _Records(reader, t, start + bound)
    verdict: Verdict
    try:
        writer.write(first)
        await writer.drain()
        try:
            version, why = await _flight(rec)
        except _EarlyHeartbeat as early:
            rec.note(_heartbeat_answer(early.payload) + " before ServerHelloDone")
            if ECHO_MARK in early.payload:
                verdict, detail = "vulnerable", "the server echoed our over-long heartbeat inside its flight (CVE-2014-0160)"
            else:
                verdict, detail = "undetermined", "a heartbeat record inside the server's flight"
            return RawResult(verdict, detail, sent, rec.received, (time.monotonic() - start) * 1000)
        if version is None:
            verdict, detail = "undetermined", why or "no ServerHelloDone"
        else:
            verdict, detail = await answer(rec, writer, version, sent)
    except (ConnectionResetError, BrokenPipeError):
        # While we were sending: the server may have refused anything, the test says nothing.
        rec.note("reset while we sent")
        verdict, detail = "undetermined", "connection reset while we were sending"
    except Exception as exc:  # hostile peers must never crash the scanner
        verdict, detail = "undetermined", f"{type(exc).__name__}: {exc}"
    finally:
        await _close(writer)
    return RawResult(verdict, detail, sent, rec.received, (time.monotonic() - start) * 1000)
