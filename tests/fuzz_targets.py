"""Mutation fuzzing of the parsers that read what peers send (issue 12): RFC 5424, the audit XML body,
the syslog deframer, the listener's DICOM UL gate, the DICOM UL decoders of the probes, and the TLS
message parsers.

Each target takes bytes and may raise only the exception types it documents (``allowed``); anything else
is a bug. Inputs are valid seeds mutated by a fixed-seed :class:`random.Random` (bit flips, byte sets,
interesting values, inserts, deletes, truncation, duplicated and spliced chunks), so a failure
reproduces from (target, seed, iteration).

The test suite runs a few thousand executions per target (``tests/test_fuzz_parsers.py``); a long run:

    .venv/bin/python -m tests.fuzz_targets --iterations 1000000 [--seed 1] [--target NAME]
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from dcsaudit.auditmsg import rfc5424
from dcsaudit.auditmsg.classify import classify
from dcsaudit.auditmsg.framing import Deframer
from dcsaudit.auditmsg.xmlbody import parse_body
from dcsaudit.listeners import ul_guard
from dcsaudit.probes import dicom_ul as ul
from dcsaudit.probes.tls import wire

_INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x20, 0x0A, 0x3C, 0x3E, 0x30, 0x39]
_INTERESTING16 = [0x0000, 0x0001, 0x7FFF, 0x8000, 0xFFFF, 0x0100]


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
        op = rng.randrange(9)
        n = len(buf)
        if n == 0:
            buf += bytes([rng.randrange(256)])
            continue
        i = rng.randrange(n)
        if op == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[i] = rng.randrange(256)
        elif op == 2:
            buf[i] = rng.choice(_INTERESTING)
        elif op == 3 and n >= 2:
            struct.pack_into(">H", buf, min(i, n - 2), rng.choice(_INTERESTING16))
        elif op == 4:
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op == 5:
            del buf[i:i + rng.randrange(1, 17)]
        elif op == 6:
            del buf[rng.randrange(n):]
        elif op == 7:
            j = rng.randrange(n)
            buf[j:j] = buf[i:i + rng.randrange(1, 65)]
        else:
            other = rng.choice(seeds)
            if other:
                k = rng.randrange(len(other))
                buf[i:] = other[k:]
    return bytes(buf)


@dataclass
class Target:
    name: str
    seeds: list[bytes]
    run: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...] = ()


def _syslog_seeds() -> list[bytes]:
    from tests.test_audit_messages import originator_messages

    return list(originator_messages().values())


def _deframe(data: bytes) -> None:
    """Feed the stream in chunks cut where its own bytes say (so one input always splits the same way)."""
    d = Deframer(max_frame=4096, max_skip=1 << 20)
    pos = 0
    while pos < len(data):
        step = 1 + data[pos] % 97
        d.feed(data[pos:pos + step])
        assert d.buffered <= 4096 + 12, d.buffered
        pos += step
    d.close()


def _classify(data: bytes) -> None:
    m = classify(data, transport="tls", peer="127.0.0.1:1", received_at=datetime.now(UTC), framing="octet-counting")
    assert m.size == len(data)


def _ul_gate(data: bytes) -> None:
    stream = ul_guard.PduStream()
    for h in stream.feed(data):
        ul_guard.check_header(h, first=True)
    if len(data) > 6:
        ul_guard.check_associate_rq(data[6:])
        ul_guard.ae_titles(data[6:])


def _ac_seed() -> bytes:
    item = ul._item
    user = (item(0x51, struct.pack(">I", 16382)) + item(0x52, b"1.2.3.4") + item(0x55, b"PEER_1")
            + item(0x59, struct.pack(">H", 3) + b"abc"))
    items = (item(0x10, ul.APPLICATION_CONTEXT.encode()) + item(0x21, bytes([1, 0, 0, 0]) + item(0x40, ul.IMPLICIT_LE.encode()))
             + item(0x50, user))
    return struct.pack(">HH", 1, 0) + b"CALLED".ljust(16) + b"CALLING".ljust(16) + bytes(32) + items


def _dicom_decoders(data: bytes) -> None:
    kind = data[0] % 5 if data else 0
    body = data[1:]
    if kind == 0:
        ul.decode_associate_ac(body)
    elif kind == 1:
        ul.decode_associate_rj(body)
    elif kind == 2:
        ul.decode_abort(body)
    elif kind == 3:
        ul.decode_command_status(body)
    else:
        ul.iter_items(body)


def _tls_seeds() -> list[bytes]:
    hello = wire.build_client_hello(wire.HelloSpec(0x0304, [0x1301, 0x1302, 0xC02F], groups=[29, 23],
                                                   signature_algorithms=[0x0804, 0x0403], sni="example.invalid",
                                                   key_shares=[(29, bytes(32))]))
    sh = (struct.pack(">H", 0x0303) + bytes(32) + bytes([0]) + struct.pack(">HB", 0x1301, 0)
          + struct.pack(">H", 6) + struct.pack(">HH", 43, 2) + struct.pack(">H", 0x0304))
    cert = b"\x30\x03\x02\x01\x01"
    certs12 = struct.pack(">I", len(cert) + 3)[1:] + struct.pack(">I", len(cert))[1:] + cert
    ske = bytes([3]) + struct.pack(">H", 23) + bytes([4, 1, 2, 3, 4]) + struct.pack(">H", 0x0403)
    sslv2 = b"\x80\x2e" + bytes([4, 0, 1]) + struct.pack(">HHHH", 2, 5, 3, 16) + cert + b"\x01\x00\x80" + bytes(16)
    return [b"\x00" + hello, b"\x01" + sh, b"\x02" + certs12, b"\x03" + ske, b"\x04" + hello + hello,
            b"\x05" + sslv2, b"\x06" + hello[5:]]


def _tls(data: bytes) -> None:
    kind = data[0] % 7 if data else 0
    body = data[1:]
    if kind == 0:
        wire.parse_client_hello(body)
    elif kind == 1:
        wire.parse_server_hello(body)
    elif kind == 2:
        wire.parse_certificate_list(body, tls13=bool(data[0] & 0x80))
    elif kind == 3:
        wire.parse_server_key_exchange(body, "ECDHE" if data[0] & 0x80 else "DHE", 0x0303)
    elif kind == 4:
        wire.split_records(bytearray(body))
    elif kind == 5:
        wire.parse_sslv2_server_hello(body)
    else:
        wire.HandshakeBuffer().feed(body)


def targets() -> list[Target]:
    syslog = _syslog_seeds()
    bodies = [rfc5424.parse(m).msg for m in syslog]
    frames = [b"".join(str(len(m)).encode() + b" " + m for m in syslog[:3]) + syslog[3] + b"\n" + b"\r\n\x00"]
    rq = [ul.encode_associate_rq("CALLED", "CALLING", [ul.ProposedContext(1, ul.VERIFICATION),
                                                       ul.ProposedContext(3, "1.2.840.10008.5.1.4.1.1.7")],
                                 ul.UserIdentityRQ(2, b"user", b"pass"))]
    pdus = [b"\x00" + _ac_seed(), b"\x01" + bytes([0, 1, 1, 1]), b"\x02" + bytes([0, 0, 2, 6]),
            b"\x03" + ul.encode_c_echo_rq(1)[6:], b"\x04" + _ac_seed()[68:]]
    return [
        Target("rfc5424", syslog, rfc5424.parse),
        Target("xml_body", bodies, parse_body),
        Target("classify", syslog, _classify),
        Target("deframer", frames, _deframe),
        Target("ul_gate", rq, _ul_gate),
        Target("dicom_ul", pdus, _dicom_decoders, (ul.PduError,)),
        Target("tls_wire", _tls_seeds(), _tls, (ValueError,)),
    ]


def fuzz(target: Target, iterations: int, seed: int) -> dict[str, int]:
    """Run ``iterations`` mutated inputs; raise AssertionError naming the first input that breaks the rule."""
    rng = random.Random(f"{target.name}:{seed}")
    outcomes = {"ok": 0, "allowed_error": 0}
    for i in range(iterations):
        data = mutate(rng, rng.choice(target.seeds), target.seeds)
        try:
            target.run(data)
            outcomes["ok"] += 1
        except target.allowed:
            outcomes["allowed_error"] += 1
        except Exception as exc:
            raise AssertionError(f"{target.name}: iteration {i} (seed {seed}): {type(exc).__name__}: {exc}; "
                                 f"input {data[:200]!r}") from exc
    return outcomes


def main() -> int:
    ap = argparse.ArgumentParser(description="long fuzz run of the parsers")
    ap.add_argument("--iterations", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--target", action="append")
    args = ap.parse_args()
    failed = 0
    for t in targets():
        if args.target and t.name not in args.target:
            continue
        t0 = time.perf_counter()
        try:
            got = fuzz(t, args.iterations, args.seed)
            print(f"{t.name}: {args.iterations} executions in {time.perf_counter() - t0:.0f} s: {got}", flush=True)
        except AssertionError as exc:
            failed += 1
            print(f"{t.name}: FAILED after {time.perf_counter() - t0:.0f} s: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
