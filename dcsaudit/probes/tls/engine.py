"""One raw handshake attempt: send a hand-built ClientHello, read the server's answer, classify it.

Like nmap's ssl-enum-ciphers and testssl.sh, the engine never completes a TLS 1.2 handshake: the
ServerHello (RFC 5246 §7.4.1.3) already says which version and suite the server chose, the plaintext
flight shows the certificate, ServerKeyExchange (group, DHE size, signature scheme) and any
CertificateRequest. For TLS 1.3 it can derive the handshake keys (see ``tls13``) to read the same
facts from the encrypted flight. Every read has a deadline; anything unexpected is an outcome, never
an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Literal

from dcsaudit.probes.tls import wire
from dcsaudit.probes.tls.registry import cipher_suites
from dcsaudit.probes.tls.tls13 import TLS13_SUITES, KeyShare, Tls13Session

Kind = Literal["hello", "alert", "closed", "reset", "timeout", "garbage", "refused", "unreachable"]


@dataclass
class Outcome:
    kind: Kind
    server_hello: wire.ServerHello | None = None
    alert: wire.Alert | None = None
    certificates: list[bytes] = field(default_factory=list)
    key_exchange: wire.ServerKeyExchange | None = None
    certificate_request: bool = False
    tls13_signature_scheme: int | None = None
    client_auth: Literal["required", "optional"] | None = None  # from finishing a TLS 1.3 handshake
    sslv2: tuple[int, list[int], bytes] | None = None
    detail: str = ""
    elapsed_ms: float = 0.0
    first_bytes: bytes = b""

    @property
    def accepted(self) -> bool:
        return self.kind == "hello" and (self.server_hello is not None or self.sslv2 is not None)


@dataclass(frozen=True)
class Timeouts:
    connect: float = 2.0
    read: float = 2.0


async def _open(host: str, port: int, t: Timeouts) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | Outcome:
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), t.connect)
    except TimeoutError:
        return Outcome("timeout", detail="connect timed out")
    except ConnectionRefusedError:
        return Outcome("refused", detail="connection refused")
    except OSError as exc:
        return Outcome("unreachable", detail=f"connect failed: {exc.strerror or exc}")


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 0.5)


async def exchange(
    host: str,
    port: int,
    hello: bytes,
    t: Timeouts,
    *,
    full_flight: bool = True,
    key_shares: dict[int, KeyShare] | None = None,
    finish_tls13: bool = False,
) -> Outcome:
    """Send ``hello`` and read until the server's first flight ends, it alerts, or it closes.

    ``full_flight`` False stops at the ServerHello (enough to learn version and suite). With
    ``key_shares`` a TLS 1.3 ServerHello lets the engine decrypt the rest of the flight; with
    ``finish_tls13`` it also sends an empty Certificate and Finished and reads the verdict.
    """
    start = time.perf_counter()
    opened = await _open(host, port, t)
    if isinstance(opened, Outcome):
        opened.elapsed_ms = (time.perf_counter() - start) * 1000
        return opened
    reader, writer = opened
    try:
        out = await _converse(reader, writer, hello, t, full_flight, key_shares or {}, finish_tls13)
    except (ConnectionResetError, BrokenPipeError):
        out = Outcome("reset", detail="connection reset by peer")
    except Exception as exc:  # hostile peers must never crash the scanner
        out = Outcome("garbage", detail=f"{type(exc).__name__}: {exc}")
    finally:
        await _close(writer)
    out.elapsed_ms = (time.perf_counter() - start) * 1000
    return out


async def _converse(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    hello: bytes,
    t: Timeouts,
    full_flight: bool,
    key_shares: dict[int, KeyShare],
    finish_tls13: bool,
) -> Outcome:
    writer.write(hello)
    await writer.drain()
    deadline = time.monotonic() + t.read
    buf = bytearray()
    hs = wire.HandshakeBuffer()
    out = Outcome("closed")
    session: Tls13Session | None = None
    sh: wire.ServerHello | None = None
    finished_sent = False
    sslv2 = hello[0] & 0x80 != 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if finished_sent:  # nothing after our Finished: the server did not object
                out.client_auth = "optional"
                return out
            out.kind = "timeout" if not out.first_bytes else out.kind
            out.detail = out.detail or "no complete answer before the read timeout"
            return out
        try:
            chunk = await asyncio.wait_for(reader.read(16384), remaining)
        except TimeoutError:
            continue
        if not chunk:
            if finished_sent:
                out.client_auth = out.client_auth or "required"
                return out
            if sh is None:
                out.kind = "closed" if not out.first_bytes else out.kind
                if out.first_bytes and out.kind not in ("hello", "alert"):
                    out.kind = "garbage"
                    out.detail = "connection closed inside a record"
            return out
        if not out.first_bytes:
            out.first_bytes = bytes(chunk[:16])
        buf += chunk
        if sslv2:
            try:
                parsed = wire.parse_sslv2_server_hello(bytes(buf))
            except ValueError:
                continue  # incomplete; wait for more
            if parsed is None:
                if buf[:1] == b"\x15" or buf[0] & 0x80 == 0:
                    out.kind = "alert" if buf[:1] == b"\x15" else "garbage"
                    return out
                out.kind = "alert"
                return out
            out.kind = "hello"
            out.sslv2 = parsed
            return out
        try:
            records = wire.split_records(buf)
        except ValueError as exc:
            out.kind = "garbage"
            out.detail = str(exc)
            return out
        for ct, _ver, payload in records:
            if ct == wire.CT_ALERT:
                if len(payload) >= 2:
                    out.alert = wire.Alert(payload[0], payload[1])
                if finished_sent:
                    out.client_auth = "required"
                    return out
                if sh is None:
                    out.kind = "alert"
                return out
            if ct == wire.CT_CHANGE_CIPHER_SPEC:
                continue
            if ct == wire.CT_APPLICATION_DATA:
                if session is None:
                    out.kind = "garbage" if sh is None else out.kind
                    return out
                inner_type, content = session.decrypt(payload)
                if inner_type == wire.CT_ALERT and len(content) >= 2:
                    out.alert = wire.Alert(content[0], content[1])
                    if finished_sent:
                        out.client_auth = "required"
                    return out
                if inner_type != wire.CT_HANDSHAKE:
                    continue
                ct, payload = wire.CT_HANDSHAKE, content
            if ct != wire.CT_HANDSHAKE:
                out.kind = "garbage"
                return out
            for mtype, body, raw in hs.feed(payload):
                if finished_sent:
                    if mtype == wire.HT_NEW_SESSION_TICKET:
                        out.client_auth = "optional"
                        return out
                    continue
                if sh is None:
                    if mtype != wire.HT_SERVER_HELLO:
                        out.kind = "garbage"
                        out.detail = f"first handshake message is type {mtype}"
                        return out
                    sh = wire.parse_server_hello(body)
                    sh.raw = raw
                    out.kind = "hello"
                    out.server_hello = sh
                    if sh.hello_retry:
                        return out
                    if sh.version >= 0x0304:
                        share = key_shares.get(sh.selected_group or -1)
                        peer = sh.key_share
                        if share is None or peer is None or sh.cipher_suite not in TLS13_SUITES:
                            return out
                        session = Tls13Session(sh.cipher_suite, share.shared(peer), hello[5:], raw)
                        continue
                    if not full_flight:
                        return out
                    continue
                if session is not None:
                    session.add(raw)
                if mtype == wire.HT_CERTIFICATE:
                    out.certificates = wire.parse_certificate_list(body, tls13=session is not None)
                elif mtype == wire.HT_SERVER_KEY_EXCHANGE:
                    kx = cipher_suites().get(sh.cipher_suite)
                    out.key_exchange = wire.parse_server_key_exchange(body, kx.kx if kx else "", sh.version)
                elif mtype == wire.HT_CERTIFICATE_REQUEST:
                    out.certificate_request = True
                elif mtype == wire.HT_CERTIFICATE_VERIFY and len(body) >= 2:
                    out.tls13_signature_scheme = int.from_bytes(body[:2], "big")
                elif mtype == wire.HT_SERVER_HELLO_DONE:
                    return out
                elif mtype == wire.HT_FINISHED and session is not None:
                    if not finish_tls13:
                        return out
                    writer.write(session.finish_without_certificate(out.certificate_request))
                    await writer.drain()
                    finished_sent = True
                    # Alerts come within a round trip; a server that stays silent accepted us.
                    deadline = time.monotonic() + min(t.read, 1.0)
