"""The syslog collector against real TLS/UDP senders on loopback: framing, client certificates,
hostile inputs, and a 10,000-message burst."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from dcsaudit.audit_originator import AuditOriginator
from dcsaudit.auditmsg import build
from dcsaudit.auditmsg.framing import FrameError
from dcsaudit.evidence import EvidenceLog
from dcsaudit.listeners.syslog_collector import DROP_COUNTER, SyslogCollector
from tests.peers.common import LOOPBACK, TestPKI
from tests.peers.rsyslog import wait_until
from tests.test_audit_messages import originator_messages


@pytest.fixture
def collector(pki: TestPKI) -> Iterator[SyslogCollector]:
    c = SyslogCollector(LOOPBACK, 0, 0, EvidenceLog(), cert_file=pki.server_chain, key_file=pki.server_key,
                        ca_file=pki.ca_file, idle_timeout=2.0, handshake_timeout=2.0)
    c.start()
    yield c
    if not c._stop.is_set():
        c.stop(drain_seconds=0.2)


def _tls(port: int, cert: tuple[Path, Path] | None = None) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    s = ctx.wrap_socket(socket.create_connection((LOOPBACK, port), timeout=5))
    return s


def _close(s: ssl.SSLSocket) -> None:
    """Close like a well-behaved sender (close_notify, RFC 5425 §4.4). A plain close() with the server's
    TLS 1.3 session tickets unread makes the kernel send RST, which discards data still in flight."""
    try:
        s.settimeout(5)
        s.unwrap()
    except (OSError, ssl.SSLError, ValueError):
        pass
    s.close()


def _valid() -> bytes:
    return originator_messages()["auth"]


def test_tls_and_udp_messages_received_and_classified(collector: SyslogCollector, pki: TestPKI) -> None:
    # Given the originator sending over TLS (with a client certificate from the CA) and over UDP
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.ca_file))
    ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    with AuditOriginator(LOOPBACK, collector.tls_port or 0, "tls", ssl_context=ctx) as tls:
        assert tls.application_activity(True, ["DEMO"]) and tls.query("1.2.3", LOOPBACK, "SCU"), tls.last_error
    with AuditOriginator(LOOPBACK, collector.udp_port or 0, "udp") as udp:
        assert udp.user_authentication("bob", False, LOOPBACK)
    # When the collector stops
    assert wait_until(lambda: len(collector.snapshot()) >= 3, 5)
    trail = collector.stop(drain_seconds=0.5)
    # Then every message is there, classified, with transport and framing; the client cert validated
    got = sorted((m.transport, m.framing, m.event_id, m.valid) for m in trail.messages)
    assert got == [("tls", "octet-counting", "110100", True), ("tls", "octet-counting", "110112", True),
                   ("udp", "datagram", "110114", True)]
    assert all(m.evidence for m in trail.messages)
    (conn,) = trail.connections
    assert conn.client_certificate_presented and conn.client_certificate_validated is True
    assert conn.client_certificate_sha256 and conn.messages == 2
    assert trail.largest_message == max(m.size for m in trail.messages)


def test_client_certificate_absent_or_untrusted_is_recorded(collector: SyslogCollector, tmp_path: Path) -> None:
    # Given one sender without a client certificate and one with a certificate from another CA
    other = trustme.CA().issue_cert("intruder")
    other.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    other.private_key_pem.write_to_path(str(tmp_path / "c.key"))
    for cert in (None, (tmp_path / "c.pem", tmp_path / "c.key")):
        s = _tls(collector.tls_port or 0, cert)
        s.sendall(build.octet_frame(_valid()))
        _close(s)
    # When the collector stops
    assert wait_until(lambda: len(collector.snapshot()) >= 2, 5)
    trail = collector.stop(drain_seconds=1.0)
    # Then both messages were still received, and the connections say what the senders showed
    assert len(trail.messages) == 2
    conns = sorted(trail.connections, key=lambda c: c.client_certificate_presented)
    assert not conns[0].client_certificate_presented and conns[0].client_certificate_validated is None
    assert conns[1].client_certificate_presented and conns[1].client_certificate_validated is False
    assert conns[1].verify_error


def test_non_transparent_framing_is_detected(collector: SyslogCollector) -> None:
    # Given a sender that terminates messages with LF instead of octet-counting (RFC 6587)
    s = _tls(collector.tls_port or 0)
    s.sendall(_valid() + b"\n" + _valid() + b"\n")
    _close(s)
    assert wait_until(lambda: len(collector.snapshot()) >= 2, 5)
    # When the trail is read
    trail = collector.stop(drain_seconds=1.0)
    # Then both messages are kept, marked non-transparent, with the RFC 5425 error
    assert [m.framing for m in trail.messages] == ["non-transparent", "non-transparent"]
    assert all(any("RFC 5425" in e for e in m.errors) for m in trail.messages)
    assert trail.connections[0].framing == ["non-transparent"]


def test_hostile_inputs_do_not_stop_the_collector_or_lose_good_messages(collector: SyslogCollector) -> None:
    port = collector.tls_port or 0
    valid = _valid()
    bomb = build.syslog_message(b'<!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
                                b"<AuditMessage>&b;</AuditMessage>")
    xxe = build.syslog_message(b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><AuditMessage>&x;</AuditMessage>')
    bad_utf8 = valid.replace(b"alice", b"\xc3\x28\xff\xfe")
    # Given: garbage frame, absurd length, oversize frame, malformed MSG-LEN, plain TCP without TLS,
    # a slow sender that stalls mid-frame, and bodies that are XML bombs, XXE or invalid UTF-8
    s = _tls(port)
    s.sendall(b"\x00\x01garbage without newline")
    _close(s)
    s = _tls(port)
    s.sendall(b"99999999999 " + b"x" * 100)
    _close(s)
    s = _tls(port)
    big = 2 * 1024 * 1024
    s.sendall(str(big).encode() + b" ")
    chunk = b"y" * 65536
    for _ in range(big // len(chunk)):
        s.sendall(chunk)
    s.sendall(build.octet_frame(valid))  # a good frame after the dropped oversize one
    _close(s)
    s = _tls(port)
    s.sendall(b"12abc " + valid)
    _close(s)
    raw = socket.create_connection((LOOPBACK, port), timeout=5)
    raw.sendall(b"300 <85>1 plain text, no TLS\n")
    raw.close()
    slow = _tls(port)
    slow.sendall(b"500 <85>1 - ")  # then silence: the idle timeout (2 s here) must close it
    s = _tls(port)
    for body in (bomb, xxe, bad_utf8, valid):
        s.sendall(build.octet_frame(body))
    _close(s)
    # When more good messages follow on a fresh connection while the slow one still hangs
    with AuditOriginator(LOOPBACK, port, "tls") as o:
        for _ in range(5):
            assert o.application_activity(True, ["X"]), o.last_error
    assert wait_until(lambda: len(collector.snapshot()) >= 10, 10)
    time.sleep(2.5)  # let the slow sender hit the idle timeout
    slow.close()
    trail = collector.stop(drain_seconds=0.5)
    # Then every well-formed message is kept and valid, and each hostile body is classified invalid
    assert len(trail.messages) == 10  # nothing invented from the broken frames
    good = [m for m in trail.messages if m.valid]
    assert len(good) == 7  # 1 after the oversize frame, 1 in the hostile batch, 5 from the originator
    refused = [m for m in trail.messages if any("refused" in e for e in m.errors)]
    assert len(refused) == 2  # the bomb and the external entity
    assert any(any("not well formed" in e for e in m.errors) for m in trail.messages)  # invalid UTF-8
    assert trail.dropped.get("oversize", 0) >= 2 and trail.dropped.get("malformed_frame", 0) >= 2
    errors = " ".join(e for c in trail.connections for e in c.errors)
    assert "absurd" in errors and "idle" in errors and "handshake failed" in errors


def test_udp_one_message_per_datagram_and_garbage(collector: SyslogCollector) -> None:
    # Given valid, empty-ish and garbage datagrams
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for d in (_valid(), b"\xff\xfe\x00garbage", _valid()):
            u.sendto(d, (LOOPBACK, collector.udp_port or 0))
    assert wait_until(lambda: len(collector.snapshot()) >= 3, 5)
    trail = collector.stop(drain_seconds=0.2)
    # Then each datagram is one message; the garbage one is invalid with a reason
    assert [m.valid for m in trail.messages] == [True, False, True]
    assert any("PRI" in e for e in trail.messages[1].errors)


def test_connection_limit_bounds_resources(pki: TestPKI) -> None:
    # Given a collector that allows 2 connections and 3 stalled senders
    c = SyslogCollector(LOOPBACK, 0, None, EvidenceLog(), idle_timeout=5.0, max_connections=2)
    c.start()
    socks = [socket.create_connection((LOOPBACK, c.tls_port or 0), timeout=5) for _ in range(3)]
    time.sleep(0.5)
    # When a well-behaved sender comes after the stalled ones are gone
    for s in socks:
        s.close()
    time.sleep(0.5)
    with AuditOriginator(LOOPBACK, c.tls_port or 0, "tls") as o:
        assert o.application_activity(True, ["X"]), o.last_error
    assert wait_until(lambda: len(c.snapshot()) >= 1, 5)
    trail = c.stop(drain_seconds=0.2)
    # Then the stalled sender silent longest was closed to admit the third, and the collector still served
    # the next one
    assert trail.dropped.get("evicted_idle_connection_limit") == 1
    assert len(trail.messages) == 1 and trail.messages[0].valid


def test_burst_of_10000_over_tls_loses_nothing(pki: TestPKI, tmp_path: Path) -> None:
    # Given a collector writing its files to a directory, and a burst of 10,000 messages of ~1.5 KB on one
    # TLS connection
    c = SyslogCollector(LOOPBACK, 0, None, EvidenceLog(), cert_file=pki.server_chain, key_file=pki.server_key,
                        out_dir=tmp_path, keep_all=100, per_class=5)
    c.start()
    msg = originator_messages()["store"]
    assert 1300 < len(msg) < 1800
    frame = build.octet_frame(msg)
    s = _tls(c.tls_port or 0)
    s.sendall(frame * 10_000)
    _close(s)
    # When the collector has received and classified them all
    assert wait_until(lambda: c.received() >= 10_000, 30, interval=0.05)
    assert wait_until(lambda: c.classified() >= 10_000, 90, interval=0.1)
    trail = c.stop(drain_seconds=0.5)
    # Then none is lost, all are valid and classified, every one is in the JSON Lines file, and the trail
    # keeps the first 100 whole (the report's size does not grow with the volume)
    assert (trail.received, trail.classified, len(trail.messages)) == (10_000, 10_000, 100)
    assert all(m.valid for m in trail.messages)
    assert not trail.dropped
    [cls] = trail.classes
    assert (cls.transport, cls.event_id, cls.valid, cls.count, cls.examples) == ("tls", "110104", True, 10_000,
                                                                                [0, 1, 2, 3, 4])
    lines = (tmp_path / "messages.jsonl").read_text().splitlines()
    assert len(lines) == 10_000 and json.loads(lines[-1])["index"] == 9_999
    assert trail.messages_file == str(tmp_path / "messages.jsonl") and trail.received_file


def test_every_framing_error_has_a_dropped_counter() -> None:
    # Every way the deframer can drop octets lands in AuditTrail.dropped under a known key
    assert set(DROP_COUNTER) == set(FrameError)
    assert set(DROP_COUNTER.values()) == {"malformed_frame", "oversize", "incomplete_frame"}
