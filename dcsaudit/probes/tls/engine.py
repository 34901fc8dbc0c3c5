"""One raw handshake attempt: send a hand-built ClientHello, read the server's answer, classify it.

Like nmap's ssl-enum-ciphers and testssl.sh, the engine never completes a TLS 1.2 handshake: the
ServerHello (RFC 5246 §7.4.1.3) already says which version and suite the server chose, the plaintext
flight shows the certificate, ServerKeyExchange (group, DHE size, signature scheme) and any
CertificateRequest. For TLS 1.3 it can derive the handshake keys (see ``tls13``) to read the same
facts from the encrypted flight. Every read has a deadline; anything unexpected is an outcome, never
an exception.

The conversation is an explicit state machine (:class:`Conversation`, its transition table
``HANDSHAKE``, like pynetdicom's ``fsm.py``); :func:`_converse` is only the I/O loop around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from dcsaudit.probes.tls import wire
from dcsaudit.probes.tls.tls13 import TLS13_SUITES, KeyShare, Tls13Session
from dcsaudit.rules.tls_suites import cipher_suites

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


class State(Enum):
    """Where one raw handshake is (RFC 8446 §2, RFC 5246 §7.3, from the client's side)."""

    SERVER_HELLO = "awaiting ServerHello"
    TLS12_FLIGHT = "reading the TLS 1.2 flight (Certificate … ServerHelloDone)"
    TLS13_FLIGHT = "reading the encrypted TLS 1.3 flight (… Finished)"
    FINISHED_SENT = "our Finished sent; awaiting the server's verdict on our (empty) certificate"


Step = Outcome | None  # an Outcome ends the conversation; None reads on


@dataclass
class Conversation:
    """The client side of one handshake as an explicit state machine, fed records and end events.

    I/O lives in :func:`_converse`; this class only decides. ``HANDSHAKE`` is the transition table:
    (state, handshake message type) → handler; a message a state has no row for is ignored, except
    before the ServerHello, where anything else is garbage.
    """

    hello: bytes
    full_flight: bool
    key_shares: dict[int, KeyShare]
    finish_tls13: bool
    state: State = State.SERVER_HELLO
    out: Outcome = field(default_factory=lambda: Outcome("closed"))
    session: Tls13Session | None = None
    handshake: wire.HandshakeBuffer = field(default_factory=wire.HandshakeBuffer)
    outgoing: bytearray = field(default_factory=bytearray)  # to send now (our Finished)
    read_window: float | None = None  # a new, shorter read deadline (after our Finished)

    @property
    def server_hello(self) -> wire.ServerHello | None:
        return self.out.server_hello

    # --- end events -------------------------------------------------------------------------
    def on_timeout(self) -> Outcome:
        if self.state is State.FINISHED_SENT:  # nothing after our Finished: the server did not object
            self.out.client_auth = "optional"
            return self.out
        self.out.kind = "timeout" if not self.out.first_bytes else self.out.kind
        self.out.detail = self.out.detail or "no complete answer before the read timeout"
        return self.out

    def on_eof(self) -> Outcome:
        if self.state is State.FINISHED_SENT:
            self.out.client_auth = self.out.client_auth or "required"
        elif self.state is State.SERVER_HELLO:
            if not self.out.first_bytes:
                self.out.kind = "closed"
            elif self.out.kind not in ("hello", "alert"):
                self.out.kind, self.out.detail = "garbage", "connection closed inside a record"
        return self.out

    # --- records ----------------------------------------------------------------------------
    def on_record(self, ct: int, payload: bytes) -> Step:
        if ct == wire.CT_ALERT:
            return self._alert(payload)
        if ct == wire.CT_CHANGE_CIPHER_SPEC:
            return None
        if ct == wire.CT_APPLICATION_DATA:
            if self.session is None:
                self.out.kind = "garbage" if self.state is State.SERVER_HELLO else self.out.kind
                return self.out
            inner_type, content = self.session.decrypt(payload)
            if inner_type == wire.CT_ALERT and len(content) >= 2:
                return self._alert(content)
            if inner_type != wire.CT_HANDSHAKE:
                return None
            payload = content
        elif ct != wire.CT_HANDSHAKE:
            self.out.kind = "garbage"
            return self.out
        for mtype, body, raw in self.handshake.feed(payload):
            step = self._on_handshake(mtype, body, raw)
            if step is not None:
                return step
        return None

    def _alert(self, payload: bytes) -> Outcome:
        if len(payload) >= 2:
            self.out.alert = wire.Alert(payload[0], payload[1])
        if self.state is State.FINISHED_SENT:
            self.out.client_auth = "required"
        elif self.state is State.SERVER_HELLO:
            self.out.kind = "alert"
        return self.out

    def _on_handshake(self, mtype: int, body: bytes, raw: bytes) -> Step:
        if self.session is not None and self.state is State.TLS13_FLIGHT:
            self.session.add(raw)  # the transcript for the handshake keys and our Finished
        handler = HANDSHAKE.get((self.state, mtype))
        if handler is not None:
            return handler(self, body, raw)
        if self.state is State.SERVER_HELLO:
            self.out.kind, self.out.detail = "garbage", f"first handshake message is type {mtype}"
            return self.out
        return None

    # --- handshake messages -------------------------------------------------------------------
    def _server_hello(self, body: bytes, raw: bytes) -> Step:
        sh = wire.parse_server_hello(body)
        sh.raw = raw
        self.out.kind, self.out.server_hello = "hello", sh
        if sh.hello_retry:
            return self.out
        if sh.version >= 0x0304:
            share = self.key_shares.get(sh.selected_group or -1)
            if share is None or sh.key_share is None or sh.cipher_suite not in TLS13_SUITES:
                return self.out  # version and suite are known; the rest cannot be read
            self.session = Tls13Session(sh.cipher_suite, share.shared(sh.key_share), self.hello[5:], raw)
            self.state = State.TLS13_FLIGHT
            return None
        if not self.full_flight:
            return self.out
        self.state = State.TLS12_FLIGHT
        return None

    def _certificate(self, body: bytes, raw: bytes) -> Step:
        self.out.certificates = wire.parse_certificate_list(body, tls13=self.session is not None)
        return None

    def _server_key_exchange(self, body: bytes, raw: bytes) -> Step:
        sh = self.server_hello
        assert sh is not None
        kx = cipher_suites().get(sh.cipher_suite)
        self.out.key_exchange = wire.parse_server_key_exchange(body, kx.kx if kx else "", sh.version)
        return None

    def _certificate_request(self, body: bytes, raw: bytes) -> Step:
        self.out.certificate_request = True
        return None

    def _certificate_verify(self, body: bytes, raw: bytes) -> Step:
        if len(body) >= 2:
            self.out.tls13_signature_scheme = int.from_bytes(body[:2], "big")
        return None

    def _server_hello_done(self, body: bytes, raw: bytes) -> Step:
        return self.out

    def _finished(self, body: bytes, raw: bytes) -> Step:
        if not self.finish_tls13 or self.session is None:
            return self.out
        self.outgoing += self.session.finish_without_certificate(self.out.certificate_request)
        self.state = State.FINISHED_SENT
        self.read_window = 1.0  # alerts come within a round trip; a server that stays silent accepted us
        return None

    def _new_session_ticket(self, body: bytes, raw: bytes) -> Step:
        self.out.client_auth = "optional"
        return self.out


Handler = Callable[[Conversation, bytes, bytes], Step]
HANDSHAKE: dict[tuple[State, int], Handler] = {
    (State.SERVER_HELLO, wire.HT_SERVER_HELLO): Conversation._server_hello,
    (State.TLS12_FLIGHT, wire.HT_CERTIFICATE): Conversation._certificate,
    (State.TLS12_FLIGHT, wire.HT_SERVER_KEY_EXCHANGE): Conversation._server_key_exchange,
    (State.TLS12_FLIGHT, wire.HT_CERTIFICATE_REQUEST): Conversation._certificate_request,
    (State.TLS12_FLIGHT, wire.HT_SERVER_HELLO_DONE): Conversation._server_hello_done,
    (State.TLS13_FLIGHT, wire.HT_CERTIFICATE): Conversation._certificate,
    (State.TLS13_FLIGHT, wire.HT_CERTIFICATE_REQUEST): Conversation._certificate_request,
    (State.TLS13_FLIGHT, wire.HT_CERTIFICATE_VERIFY): Conversation._certificate_verify,
    (State.TLS13_FLIGHT, wire.HT_FINISHED): Conversation._finished,
    (State.FINISHED_SENT, wire.HT_NEW_SESSION_TICKET): Conversation._new_session_ticket,
}


def _sslv2_answer(buf: bytes, out: Outcome) -> Step:
    """SSLv2 (draft-hickman): the whole ServerHello or an error; None while incomplete."""
    try:
        parsed = wire.parse_sslv2_server_hello(buf)
    except ValueError:
        return None
    if parsed is None:
        out.kind = "garbage" if buf[:1] != b"\x15" and buf[0] & 0x80 == 0 else "alert"
        return out
    out.kind, out.sslv2 = "hello", parsed
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
    """The I/O loop around :class:`Conversation`: send, read with one deadline, feed, stop."""
    writer.write(hello)
    await writer.drain()
    conv = Conversation(hello, full_flight, key_shares, finish_tls13)
    out = conv.out
    sslv2 = hello[0] & 0x80 != 0
    deadline = time.monotonic() + t.read
    buf = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return conv.on_timeout()
        try:
            chunk = await asyncio.wait_for(reader.read(16384), remaining)
        except TimeoutError:
            continue
        if not chunk:
            return conv.on_eof()
        if not out.first_bytes:
            out.first_bytes = bytes(chunk[:16])
        buf += chunk
        if sslv2:
            step = _sslv2_answer(bytes(buf), out)
            if step is not None:
                return step
            continue
        try:
            records = wire.split_records(buf)
        except ValueError as exc:
            out.kind, out.detail = "garbage", str(exc)
            return out
        for ct, _ver, payload in records:
            step = conv.on_record(ct, payload)
            if conv.outgoing:
                writer.write(bytes(conv.outgoing))
                await writer.drain()
                conv.outgoing.clear()
            if conv.read_window is not None:
                deadline = time.monotonic() + min(t.read, conv.read_window)
                conv.read_window = None
            if step is not None:
                return step
