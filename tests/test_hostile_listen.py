"""Hostile initiators against ``dcsaudit listen``'s DICOM SCP (issue 12 F6-F10): each case is bounded in
time, ends with a record and an answer to the peer, no thread traceback, and the next good association
is served at once."""

from __future__ import annotations

import contextlib
import random
import resource
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dcsaudit.evidence import EvidenceLog
from dcsaudit.listeners import ul_guard
from dcsaudit.listeners.dicom_scp import DicomListener
from dcsaudit.probes import dicom_ul as ul
from tests.peers.common import LOOPBACK, TestPKI, require_program

VERIFY = [ul.ProposedContext(1, ul.VERIFICATION)]


@pytest.fixture
def thread_errors() -> Iterator[list[str]]:
    """Every exception that ends a thread (pynetdicom's reactor included) during the test."""
    seen: list[str] = []
    old = threading.excepthook
    threading.excepthook = lambda a: seen.append(f"{a.thread.name if a.thread else '?'}: {a.exc_type.__name__}")
    try:
        yield seen
    finally:
        threading.excepthook = old


@pytest.fixture
def listener(pki: TestPKI) -> Iterator[DicomListener]:
    lst = DicomListener(LOOPBACK, 0, 0, EvidenceLog(), tls_cert=pki.server_chain, tls_key=pki.server_key,
                        tls_ca=None, store_dir=None, handshake_timeout=10.0, request_timeout=10.0)
    lst.start()
    try:
        yield lst
    finally:
        lst.stop(grace=0.2)


def _read_pdu(s: socket.socket, timeout: float = 5.0) -> tuple[int, bytes]:
    s.settimeout(timeout)
    head = b""
    while len(head) < 6:
        chunk = s.recv(6 - len(head))
        if not chunk:
            return 0, b""
        head += chunk
    pdu_type, _, length = struct.unpack(">BBI", head)
    body = b""
    while len(body) < length:
        chunk = s.recv(min(65536, length - len(body)))
        if not chunk:
            break
        body += chunk
    return pdu_type, body


def _echo(port: int) -> float:
    """A good association by a DCMTK initiator; returns its wall time (asserting success)."""
    t0 = time.monotonic()
    r = subprocess.run([require_program("echoscu"), "-to", "5", "-ta", "5", "-aet", "GOOD", LOOPBACK, str(port)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return time.monotonic() - t0


def _rq_body(**kw: object) -> bytes:
    return ul.encode_associate_rq("LISTENER", "HOSTILE", VERIFY, **kw)[6:]  # type: ignore[arg-type]


def _with_context_id(cid: int) -> bytes:
    body = bytearray(_rq_body())
    pos = body.index(b"\x20\x00", 68) + 4  # first presentation context item: its id octet
    body[pos] = cid
    return bytes(body)


def _send_rq(port: int, body: bytes) -> tuple[int, bytes]:
    with socket.create_connection((LOOPBACK, port), timeout=5) as s:
        s.sendall(struct.pack(">BBI", 1, 0, len(body)) + body)
        return _read_pdu(s)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case,body", [
    ("even presentation context id", _with_context_id(2)),
    ("user identity type 9", _rq_body(user_identity=ul.UserIdentityRQ(9, b"x"))),
    ("user identity type 2 without passcode", _rq_body(user_identity=ul.UserIdentityRQ(2, b"u"))),
    ("truncated item", _rq_body()[:80]),
])
def test_malformed_rq_is_recorded_answered_and_harmless(listener: DicomListener, thread_errors: list[str],
                                                         case: str, body: bytes) -> None:
    # Given a malformed A-ASSOCIATE-RQ
    port = listener.dicom_port or 0
    # When it is sent
    answer, _ = _send_rq(port, body)
    # Then the initiator gets an A-ABORT, and the next good association is served at once
    assert answer == 7, case
    assert _echo(port) < 5
    inits = listener.stop()
    bad = [i for i in inits if i.calling_ae == "HOSTILE"]
    assert len(bad) == 1 and bad[0].outcome == "aborted" and bad[0].errors
    assert any("malformed A-ASSOCIATE-RQ" in e for e in bad[0].errors)
    assert [i.outcome for i in inits if i.calling_ae == "GOOD"] == ["released"]
    assert not thread_errors


@pytest.mark.timeout(60)
def test_fuzzed_rqs_from_parallel_workers_leave_one_record_each(listener: DicomListener,
                                                                thread_errors: list[str]) -> None:
    # Given 160 mutated A-ASSOCIATE-RQs from 8 workers (fixed seed)
    port = listener.dicom_port or 0
    good = ul.encode_associate_rq("LISTENER", "FUZZ", VERIFY, ul.UserIdentityRQ(2, b"u", b"p"))
    answers: list[int] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(20):
            pdu = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                pdu[rng.randrange(6, len(pdu))] = rng.randrange(256)
            with socket.create_connection((LOOPBACK, port), timeout=5) as s:
                s.sendall(pdu)
                pdu_type, _ = _read_pdu(s)
                if pdu_type == 2:
                    s.sendall(ul.RELEASE_RQ)
                    _read_pdu(s)
                answers.append(pdu_type)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(50)
    # When a good initiator comes next
    took = _echo(port)
    inits = listener.stop()
    # Then every fuzzed connection got an answer (AC, RJ or A-ABORT) and exactly one record; no traceback
    assert len(answers) == 160 and set(answers) <= {2, 3, 7}
    assert len(inits) == 161 and took < 5
    assert not thread_errors


@pytest.mark.timeout(60)
def test_absurd_pdu_length_is_refused_before_pynetdicom(listener: DicomListener) -> None:
    # Given an accepted association, then a P-DATA declaring 0xFFFFFFFF octets and 20 MB streamed behind it
    port = listener.dicom_port or 0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s = socket.create_connection((LOOPBACK, port), timeout=5)
    s.sendall(ul.encode_associate_rq("LISTENER", "BIGPDU", VERIFY))
    assert _read_pdu(s)[0] == 2
    s.sendall(struct.pack(">BBI", 4, 0, 0xFFFFFFFF))
    answer = 0
    try:
        for _ in range(320):
            s.sendall(b"\0" * 65536)
    except OSError:
        pass  # the listener aborted and closed: the rest could not be sent
    try:
        answer = _read_pdu(s)[0]
    except OSError:
        pass
    s.close()
    # And a first PDU that is not an A-ASSOCIATE-RQ, with an absurd length
    with socket.create_connection((LOOPBACK, port), timeout=5) as s2:
        s2.sendall(struct.pack(">BBI", 1, 0, 0xFFFFFFF0) + b"\0" * 1000)
        first = _read_pdu(s2)[0]
    inits = listener.stop()
    # Then both are recorded with the reason and answered with A-ABORT; memory did not follow the claim
    assert answer in (7, 0) and first == 7
    big = [i for i in inits if i.calling_ae == "BIGPDU"]
    assert len(big) == 1 and big[0].outcome == "aborted"
    assert any("above the listener's limit" in e for e in big[0].errors)
    assert any("above the listener's limit" in e for i in inits for e in i.errors if i.calling_ae == "")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mb < 64, grown_mb


@pytest.mark.timeout(60)
def test_stray_pdus_after_the_association_make_no_phantoms(listener: DicomListener, thread_errors: list[str]) -> None:
    # Given 20 associations, each released (or aborted) and then followed by a stray PDU
    port = listener.dicom_port or 0
    for i in range(20):
        with socket.create_connection((LOOPBACK, port), timeout=5) as s:
            s.sendall(ul.encode_associate_rq("LISTENER", f"STRAY{i}", VERIFY))
            assert _read_pdu(s)[0] == 2
            if i % 2:
                s.sendall(ul.ABORT_RQ + ul.RELEASE_RQ)
            else:
                s.sendall(ul.RELEASE_RQ)
                assert _read_pdu(s)[0] == 6
                s.sendall(ul.RELEASE_RQ + struct.pack(">BBI", 4, 0, 4) + bytes(4))
            time.sleep(0.05)
    inits = listener.stop()
    # Then there are exactly 20 records, none empty, released or aborted as they were
    assert len(inits) == 20 and all(i.calling_ae.startswith("STRAY") for i in inits)
    outcome = {i.calling_ae: i.outcome for i in inits}
    assert all(outcome[f"STRAY{i}"] == ("aborted" if i % 2 else "released") for i in range(20))
    assert not thread_errors


@pytest.mark.timeout(60)
def test_silent_tls_connections_do_not_delay_the_next_association(listener: DicomListener, pki: TestPKI,
                                                                    tmp_path: Path) -> None:
    # Given three silent TCP connections and one that stalls inside its TLS handshake on the TLS port
    port = listener.dicom_tls_port or 0
    silent = [socket.create_connection((LOOPBACK, port), timeout=5) for _ in range(3)]
    half = socket.create_connection((LOOPBACK, port), timeout=5)
    half.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello record header, then nothing
    # When a good TLS initiator associates
    t0 = time.monotonic()
    r = subprocess.run([require_program("echoscu"), "+tls", str(pki.client_key), str(pki.client_cert),
                        "+cf", str(pki.ca_file), "-to", "5", "-ta", "5", LOOPBACK, str(port)],
                       capture_output=True, text=True, timeout=30)
    took = time.monotonic() - t0
    for s in [*silent, half]:
        s.close()
    inits = listener.stop()
    # Then it is served at once, and the silent ones are recorded as failed handshakes
    assert r.returncode == 0, r.stderr
    assert took < 3, took
    assert sum(1 for i in inits if i.outcome == "released" and i.tls) == 1
    assert sum(1 for i in inits if i.outcome == "tls_failure") == 4


@pytest.mark.timeout(30)
def test_connection_limit_answers_transient_reject(pki: TestPKI) -> None:
    # Given a listener serving at most 2 connections, held by two silent peers
    lst = DicomListener(LOOPBACK, 0, None, EvidenceLog(), tls_cert=None, tls_key=None, tls_ca=None, store_dir=None,
                        max_connections=2, request_timeout=3.0)
    lst.start()
    try:
        held = [socket.create_connection((LOOPBACK, lst.dicom_port or 0), timeout=5) for _ in range(2)]
        time.sleep(0.3)
        # When a third connects
        with socket.create_connection((LOOPBACK, lst.dicom_port or 0), timeout=5) as s:
            s.sendall(ul.encode_associate_rq("LISTENER", "THIRD", VERIFY))
            pdu_type, body = _read_pdu(s)
        for h in held:
            h.close()
        # Then it gets A-ASSOCIATE-RJ transient / local limit exceeded, and the slots come back
        assert (pdu_type, body[1:]) == (3, bytes([2, 3, 2]))
        time.sleep(0.5)
        assert _echo(lst.dicom_port or 0) < 5
    finally:
        inits = lst.stop(grace=0.2)
    # And the silent ones are counted (not initiators: they never asked for an association)
    assert [i.outcome for i in inits] == ["released"]
    summary = [e.summary for e in lst.evidence.items() if e.probe == "listen.dicom" and e.target == LOOPBACK]
    assert summary and "closed_without_request 2" in summary[0] and "refused_connection_limit 1" in summary[0]


def test_guard_accepts_what_real_initiators_send() -> None:
    # The gate must not refuse a well-formed RQ, with or without user identity of each type
    assert ul_guard.check_associate_rq(_rq_body()) is None
    for t, sec in ((1, b""), (2, b"pw"), (3, b""), (4, b""), (5, b"")):
        assert ul_guard.check_associate_rq(_rq_body(user_identity=ul.UserIdentityRQ(t, b"tok", sec))) is None



# -- the syslog collector ------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_thousand_idle_connections_do_not_delay_a_good_sender(pki: TestPKI) -> None:
    import ssl

    from dcsaudit.audit_originator import AuditOriginator
    from dcsaudit.listeners.syslog_collector import SyslogCollector

    c = SyslogCollector(LOOPBACK, 0, None, EvidenceLog(), cert_file=pki.server_chain, key_file=pki.server_key)
    c.start()
    idle: list[socket.socket] = []
    try:
        # Given 1,000 idle connections: 990 plain TCP that never speak, and 10 that finished TLS and went quiet
        for _ in range(990):
            idle.append(socket.create_connection((LOOPBACK, c.tls_port or 0), timeout=5))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        for _ in range(10):
            idle.append(ctx.wrap_socket(socket.create_connection((LOOPBACK, c.tls_port or 0), timeout=5)))
        time.sleep(0.6)  # they are now idle longer than a fresh connection
        # When a good sender connects and sends
        t0 = time.monotonic()
        with AuditOriginator(LOOPBACK, c.tls_port or 0, "tls") as o:
            assert o.application_activity(True, ["GOOD"]), o.last_error
        assert wait_for(lambda: c.received() >= 1, 10)
        took = time.monotonic() - t0
    finally:
        for s in idle:
            with contextlib.suppress(OSError):
                s.close()
        trail = c.stop(drain_seconds=0.2)
    # Then it was served at once, and the idle ones were closed to make room (counted)
    assert took < 2.0, took
    assert trail.received == 1 and trail.classified == 1 and trail.messages[0].valid
    evicted = sum(v for k, v in trail.dropped.items() if k.startswith("evicted_idle"))
    assert evicted >= 1000 - 64 - 1


@pytest.mark.timeout(60)
def test_collector_stop_is_bounded_and_counts_what_it_did_not_classify(pki: TestPKI, tmp_path: Path) -> None:
    from dcsaudit.listeners.syslog_collector import SyslogCollector
    from tests.test_audit_messages import originator_messages

    # Given 20,000 messages received in a burst (far more than can be classified in a second)
    c = SyslogCollector(LOOPBACK, None, 0, EvidenceLog(), out_dir=tmp_path)
    c.start()
    msg = originator_messages()["auth"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(msg, (LOOPBACK, c.udp_port or 0))
        assert wait_for(lambda: c.classified() >= 1, 20)  # the classifier process is up
        for i in range(19_999):
            u.sendto(msg, (LOOPBACK, c.udp_port or 0))
            if i % 1000 == 999:
                time.sleep(0.02)
    assert wait_for(lambda: c.received() >= 19_000, 10)
    # When it stops with half a second for classification
    t0 = time.monotonic()
    trail = c.stop(drain_seconds=0.2, classify_seconds=0.5)
    took = time.monotonic() - t0
    # Then it stopped in time; every datagram is received or counted as dropped by the kernel; what was not
    # classified is said so (and is still in received.log, raw)
    assert took < 2.5, took
    assert trail.received + trail.dropped.get("udp_kernel_drops", 0) == 20_000
    assert 0 < trail.classified < trail.received
    assert any("not classified before the collector stopped" in e.summary for e in c.evidence.items())
    assert (tmp_path / "received.log").read_bytes().count(b" udp datagram ") == trail.received


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
