"""The TLS handshake state machine (probes/tls/engine.Conversation), fed records without a network."""

from __future__ import annotations

import struct

from dcsaudit.probes.tls import wire
from dcsaudit.probes.tls.engine import Conversation, State


def handshake(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


def server_hello_12(suite: int = 0xC02F) -> bytes:
    # TLS 1.2 ServerHello: version, random, empty session id, suite, null compression, no extensions
    return handshake(wire.HT_SERVER_HELLO, struct.pack(">H", 0x0303) + bytes(32) + b"\x00"
                     + struct.pack(">HB", suite, 0) + struct.pack(">H", 0))


def conv(full_flight: bool = True) -> Conversation:
    return Conversation(hello=b"\x16\x03\x01", full_flight=full_flight, key_shares={}, finish_tls13=False)


def test_tls12_flight_runs_to_server_hello_done() -> None:
    c = conv()
    assert c.on_record(wire.CT_HANDSHAKE, server_hello_12()) is None and c.state is State.TLS12_FLIGHT
    assert c.on_record(wire.CT_HANDSHAKE, handshake(wire.HT_CERTIFICATE_REQUEST, b"\x00")) is None
    out = c.on_record(wire.CT_HANDSHAKE, handshake(wire.HT_SERVER_HELLO_DONE, b""))
    assert out is not None and out.accepted and out.certificate_request
    assert out.server_hello is not None and out.server_hello.cipher_suite == 0xC02F


def test_server_hello_is_enough_without_the_full_flight() -> None:
    out = conv(full_flight=False).on_record(wire.CT_HANDSHAKE, server_hello_12())
    assert out is not None and out.kind == "hello"


def test_alert_before_server_hello_is_an_alert_outcome() -> None:
    out = conv().on_record(wire.CT_ALERT, bytes([2, 40]))
    assert out is not None and out.kind == "alert" and out.alert == wire.Alert(2, 40)


def test_anything_but_a_server_hello_first_is_garbage() -> None:
    out = conv().on_record(wire.CT_HANDSHAKE, handshake(wire.HT_CERTIFICATE, b"\x00\x00\x00"))
    assert out is not None and out.kind == "garbage" and "first handshake message" in out.detail
    out = conv().on_record(wire.CT_APPLICATION_DATA, b"\x00" * 8)
    assert out is not None and out.kind == "garbage"


def test_end_events() -> None:
    # A close before any byte is 'closed'; silence is 'timeout'; after our Finished, a close means the
    # server required a client certificate and silence means it did not.
    assert conv().on_eof().kind == "closed"
    assert conv().on_timeout().kind == "timeout"
    c = conv()
    c.state = State.FINISHED_SENT
    assert c.on_eof().client_auth == "required"
    c = conv()
    c.state = State.FINISHED_SENT
    assert c.on_timeout().client_auth == "optional"
