"""Benchmark: a burst of 10,000 DICOM audit messages (~1.5 KB) over SYSLOG-TLS (RFC 5425, octet-counted)
to dcsaudit's collector and to rsyslog's gtls receiver, on the same machine (127.0.0.1 only).

Measured per receiver: seconds from the first byte sent until the receiver holds every message, and how
many were lost (not received within the time limit). Run from the repository root:

    .venv/bin/python benchmarks/syslog_bench.py [--count 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcsaudit.audit_originator import AuditOriginator
from dcsaudit.auditmsg import build
from dcsaudit.evidence import EvidenceLog
from dcsaudit.listeners.syslog_collector import SyslogCollector
from tests.peers.common import LOOPBACK, TestPKI
from tests.peers.rsyslog import rsyslog_tls_receiver, wait_until

LIMIT_S = 120.0


def one_message() -> bytes:
    """A valid A.5.3.7 DICOM Instances Transferred message of about 1.5 KB."""
    box: list[bytes] = []
    o = AuditOriginator(LOOPBACK, 9, "udp")
    o.send_raw = lambda m: box.append(m) or True  # type: ignore[method-assign]
    o.instances_transferred(LOOPBACK, "BENCH_SCU", "1.2.826.0.1.3680043.2.1125.1.1", "PID-0001",
                            "1.2.840.10008.5.1.4.1.1.7", 3, "DEMO")
    return box[0]


def send_burst(port: int, payload: bytes, ca: Path) -> float:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    ctx.check_hostname = False
    s = ctx.wrap_socket(socket.create_connection((LOOPBACK, port), timeout=30))
    t0 = time.perf_counter()
    s.sendall(payload)
    try:
        s.settimeout(10)
        s.unwrap()  # close_notify (RFC 5425 §4.4)
    except (OSError, ssl.SSLError):
        pass
    s.close()
    return t0


def bench_dcsaudit(pki: TestPKI, payload: bytes, count: int) -> tuple[float, int]:
    c = SyslogCollector(LOOPBACK, 0, None, EvidenceLog(), cert_file=pki.server_chain, key_file=pki.server_key,
                        ca_file=pki.ca_file)
    c.start()
    try:
        t0 = send_burst(c.tls_port or 0, payload, pki.ca_file)
        wait_until(lambda: len(c.snapshot()) >= count, LIMIT_S, interval=0.005)
        elapsed = time.perf_counter() - t0
    finally:
        trail = c.stop(drain_seconds=0.2)
    return elapsed, count - len(trail.messages)


def bench_rsyslog(pki: TestPKI, payload: bytes, count: int, workdir: Path) -> tuple[float, int]:
    with rsyslog_tls_receiver(workdir, ca_file=pki.ca_file, server_cert=pki.server_chain,
                              server_key=pki.server_key) as rs:
        time.sleep(0.3)  # let it log the readiness probe's aborted connection first
        t0 = send_burst(rs.port, payload, pki.ca_file)
        wait_until(lambda: len(rs.received_lines()) >= count, LIMIT_S, interval=0.005)
        elapsed = time.perf_counter() - t0
        got = len(rs.received_lines())
    return elapsed, count - got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    msg = one_message()
    payload = build.octet_frame(msg) * args.count
    print(f"message {len(msg)} octets, {args.count} messages, {len(payload)} octets per burst")
    with tempfile.TemporaryDirectory() as tmp:
        pki = TestPKI(Path(tmp))
        results: dict[str, list[tuple[float, int]]] = {"dcsaudit": [], "rsyslog": []}
        for run in range(args.runs):
            results["dcsaudit"].append(bench_dcsaudit(pki, payload, args.count))
            results["rsyslog"].append(bench_rsyslog(pki, payload, args.count, Path(tmp) / f"rs{run}"))
    # Where dcsaudit's time goes: classification alone (RFC 5424 parse, RELAX NG, A.5.3 rules).
    from datetime import UTC, datetime

    from dcsaudit.auditmsg import classify
    t0 = time.perf_counter()
    for _ in range(args.count):
        classify(msg, transport="tls", peer="127.0.0.1:1", received_at=datetime.now(UTC), framing="octet-counting")
    print(f"classification alone: {time.perf_counter() - t0:.3f} s for {args.count} messages")
    for name, rs in results.items():
        times = [t for t, _ in rs]
        print(f"{name:9s} median {statistics.median(times):.3f} s (runs: {', '.join(f'{t:.3f}' for t in times)}), "
              f"lost {max(lost for _, lost in rs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
