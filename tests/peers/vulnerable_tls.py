"""A fake TLS 1.2 server with the bugs no installable OpenSSL still has, and hostile variants, for tests.

It answers a ClientHello with a real first flight (ServerHello, Certificate, ServerHelloDone, RFC 5246
§7.4) built from bytes, then misbehaves as ``kind`` says:

- ``heartbleed``: answers every HeartbeatRequest with ``payload_length`` bytes read from its "memory" starting
  at the request's payload, whatever the record's real length: OpenSSL 1.0.1-1.0.1f (CVE-2014-0160).
- ``heartbeat_patched``: implements heartbeats as OpenSSL 1.0.1g-1.0.2 do: answers a well-formed request and
  silently discards one whose payload_length leaves no room for the 16 bytes of padding (RFC 6520 §4).
- ``ccs``: accepts an early ChangeCipherSpec and then fails to decrypt the next record with alert
  bad_record_mac: OpenSSL before 0.9.8za / 1.0.0m / 1.0.1h (CVE-2014-0224).
- ``silent_after_flight``: sends its flight, then reads and never answers.
- ``drip``: sends its flight one byte every 0.3 s.
- ``reset_after_flight``: sends its flight, then resets the connection on the next record.

Only loopback; every connection ends within about a minute.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from dcsaudit.probes.tls import wire
from tests.peers.common import tcp_server

Kind = Literal["heartbleed", "heartbeat_patched", "ccs", "silent_after_flight", "drip", "reset_after_flight"]
SUITE = 0x002F  # TLS_RSA_WITH_AES_128_CBC_SHA: picked when offered, else the client's first suite
MEMORY = b"-----BEGIN PRIVATE KEY----- not really, but what a leak looks like " * 300


def _handshake(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


def flight(client_hello: bytes, certificate: bytes) -> tuple[bytes, int]:
    """(ServerHello + Certificate + ServerHelloDone in one record, the version chosen)."""
    hello = wire.parse_client_hello(client_hello)
    version = min(int.from_bytes(client_hello[9:11], "big"), 0x0303)
    offered = [c for c in hello.cipher_suite_codes if c not in (0x00FF, 0x5600)]
    suite = SUITE if SUITE in offered else offered[0]
    sh = struct.pack(">H", version) + os.urandom(32) + b"\x00" + struct.pack(">HB", suite, 0) + b"\x00\x00"
    cert_list = len(certificate).to_bytes(3, "big") + certificate
    body = (_handshake(wire.HT_SERVER_HELLO, sh)
            + _handshake(wire.HT_CERTIFICATE, len(cert_list).to_bytes(3, "big") + cert_list)
            + _handshake(wire.HT_SERVER_HELLO_DONE, b""))
    return wire.record(wire.CT_HANDSHAKE, version, body), version


def _read_record(conn: socket.socket, buf: bytearray) -> tuple[int, bytes] | None:
    while True:
        if len(buf) >= 5:
            n = int.from_bytes(buf[3:5], "big")
            if len(buf) >= 5 + n:
                ct, payload = buf[0], bytes(buf[5:5 + n])
                del buf[:5 + n]
                return ct, payload
        data = conn.recv(65536)
        if not data:
            return None
        buf += data


@contextmanager
def vulnerable_server(kind: Kind, certificate: bytes = b"\x30\x03\x02\x01\x00") -> Iterator[int]:
    """Yields the port of a fake server behaving as ``kind`` (see the module docstring)."""

    def serve(conn: socket.socket) -> None:
        conn.settimeout(10)
        buf = bytearray()
        first = _read_record(conn, buf)
        if first is None or first[0] != wire.CT_HANDSHAKE:
            return
        out, version = flight(wire.record(first[0], 0x0301, first[1]), certificate)
        if kind == "drip":
            for i in range(len(out)):  # bounded by the flight's length (about a minute)
                conn.sendall(out[i:i + 1])
                time.sleep(0.3)
            return
        conn.sendall(out)
        ccs_seen = False
        for _ in range(16):  # bounded: a test sends a handful of records
            got = _read_record(conn, buf)
            if got is None:
                return
            ct, payload = got
            if kind == "silent_after_flight":
                time.sleep(8)
                return
            if kind == "reset_after_flight":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                return
            if kind == "heartbleed" and ct == wire.CT_HEARTBEAT and len(payload) >= 3 and payload[0] == 1:
                claimed = int.from_bytes(payload[1:3], "big")
                memory = payload[3:] + MEMORY  # the bug: copy `claimed` bytes, however few arrived
                answer = b"\x02" + payload[1:3] + memory[:claimed] + os.urandom(16)
                conn.sendall(wire.record(wire.CT_HEARTBEAT, version, answer))
            elif kind == "heartbeat_patched" and ct == wire.CT_HEARTBEAT and len(payload) >= 3 and payload[0] == 1:
                claimed = int.from_bytes(payload[1:3], "big")
                if 1 + 2 + claimed + 16 <= len(payload):  # else discarded silently, as the RFC says
                    answer = b"\x02" + payload[1:3] + payload[3:3 + claimed] + os.urandom(16)
                    conn.sendall(wire.record(wire.CT_HEARTBEAT, version, answer))
            elif kind == "ccs" and ct == wire.CT_CHANGE_CIPHER_SPEC:
                ccs_seen = True  # the bug: an early ChangeCipherSpec is accepted (keys from an empty secret)
            elif kind == "ccs" and ct == wire.CT_APPLICATION_DATA and ccs_seen:
                conn.sendall(wire.record(wire.CT_ALERT, version, b"\x02\x14"))  # fatal bad_record_mac
                return
            elif ct != wire.CT_HANDSHAKE:
                conn.sendall(wire.record(wire.CT_ALERT, version, b"\x02\x0a"))  # fatal unexpected_message
                return

    with tcp_server(serve, threaded=True) as port:
        yield port
