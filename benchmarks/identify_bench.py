"""Benchmark: port inventory + service identification of 50 loopback endpoints, against `nmap -sV`.

Starts 50 real endpoints on 127.0.0.1 (pynetdicom SCPs plain and TLS, DCMTK storescp plain and TLS,
HTTP servers, openssl s_server, silent listeners), times dcsaudit's inventory (nmap connect scan) plus
identification over several rounds, then runs `nmap -sV` once on the same ports, and prints the
figures as a Markdown table (docs/benchmarks.md keeps them). Only loopback is touched; every loop is
bounded in count and time. Not a test: run it by hand.

    .venv/bin/python benchmarks/identify_bench.py [--rounds 5] [--skip-nmap-sv]

``--copies 4 --default-limits`` gives the 200-endpoint case of issue 16 (four of each peer, the default
``scan.concurrency`` of 64 overall and 8 per host).
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.probes.identify import identify_all
from dcsaudit.probes.ports import inventory_host
from tests.peers.common import TestPKI
from tests.peers.dicom_peers import pynetdicom_scp, storescp
from tests.peers.spine_peers import openssl_s_server, silent_listener

LOOPBACK = "127.0.0.1"
# What each kind of peer must be identified as.
EXPECTED = {"pynetdicom": "dicom", "pynetdicom-tls": "dicom-tls", "storescp": "dicom", "storescp-tls": "dicom-tls",
            "http": "http", "openssl": "tls", "silent": "unknown"}
last: dict[int, str] = {}  # port -> service of the latest round
MIX = {"pynetdicom": 20, "pynetdicom-tls": 10, "storescp": 5, "storescp-tls": 5, "http": 5, "openssl": 3, "silent": 2}


def _http_server(stack: ExitStack) -> int:
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stack.callback(server.server_close)
    stack.callback(server.shutdown)
    return int(server.server_address[1])


SCPS_PER_PROCESS = 10  # pynetdicom SCPs per peer process (a product is a process of its own, not a thread of ours)


def peer_host(count: int, cert: str | None, key: str | None) -> int:
    """``--peer-host COUNT [CERT KEY]``: COUNT pynetdicom SCPs (TLS with CERT/KEY) in this process; prints
    their ports as JSON, then serves until stdin closes (the benchmark ended or died)."""
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            ctx = None
            if cert and key:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(cert, key)
            ports.append(stack.enter_context(pynetdicom_scp(ssl_context=ctx)))
        print(json.dumps(ports), flush=True)
        sys.stdin.read()
    return 0


def _pynetdicom_peers(stack: ExitStack, count: int, tls: TestPKI | None) -> list[int]:
    """``count`` pynetdicom SCPs in child processes of SCPS_PER_PROCESS each. In the benchmark's own
    process they would share its interpreter lock with the client under test and with each other, and
    pynetdicom runs the TLS handshake in its accept thread: the peers, not the client, were then what
    stalled under load."""
    ports: list[int] = []
    for start in range(0, count, SCPS_PER_PROCESS):
        n = min(SCPS_PER_PROCESS, count - start)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--peer-host", str(n)]
        if tls is not None:
            cmd += [str(tls.server_cert), str(tls.server_key)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        stack.callback(proc.wait, 30)
        stack.callback(proc.stdin.close)  # type: ignore[union-attr]
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"peer process {cmd} did not start")
        ports += json.loads(line)
    return ports


def start_endpoints(stack: ExitStack, pki: TestPKI, tmp: Path, copies: int = 1) -> dict[int, str]:
    ports: dict[int, str] = {p: "pynetdicom" for p in _pynetdicom_peers(stack, MIX["pynetdicom"] * copies, None)}
    ports |= {p: "pynetdicom-tls" for p in _pynetdicom_peers(stack, MIX["pynetdicom-tls"] * copies, pki)}
    for kind, n in MIX.items():
        for _ in range(n * copies):
            if kind.startswith("pynetdicom"):
                continue
            elif kind == "storescp":
                port = stack.enter_context(storescp(tmp))
            elif kind == "storescp-tls":
                port = stack.enter_context(storescp(tmp, tls=(pki.server_key, pki.server_cert)))
            elif kind == "http":
                port = _http_server(stack)
            elif kind == "openssl":
                port = stack.enter_context(openssl_s_server(pki))
            else:
                port = stack.enter_context(silent_listener())
            ports[port] = kind
    return ports


async def dcsaudit_round(ports: list[int], default_limits: bool = False) -> tuple[float, float, Counter[str]]:
    scan = {} if default_limits else {"concurrency": {"overall": 64, "per_host": 32}}
    cfg = parse_config({"deployment": "bench", "hosts": [{"address": LOOPBACK, "tcp_ports": ports, "udp_ports": []}],
                        "scan": scan})
    ctx = AuditContext.create(cfg)
    t0 = time.perf_counter()
    eps = await inventory_host(ctx, cfg.hosts[0])
    t1 = time.perf_counter()
    eps = await identify_all(ctx, eps)
    t2 = time.perf_counter()
    last.clear()
    last.update({e.port: e.service for e in eps})
    return t1 - t0, t2 - t0, Counter(e.service for e in eps)


def nmap_sv(ports: list[int], timeout: float) -> tuple[float, str]:
    cmd = ["nmap", "-n", "-Pn", "-sT", "-sV", "-p", ",".join(map(str, ports)), LOOPBACK]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, "timed out"
    dicom = sum(1 for line in out.splitlines() if "dicom" in line.lower() and "/tcp" in line)
    return time.perf_counter() - t0, f"{dicom} port line(s) mention DICOM"


def main() -> int:
    if "--peer-host" in sys.argv:
        rest = sys.argv[sys.argv.index("--peer-host") + 1:]
        return peer_host(int(rest[0]), *(rest[1:3] if len(rest) >= 3 else (None, None)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip-nmap-sv", action="store_true")
    ap.add_argument("--nmap-timeout", type=float, default=900)
    ap.add_argument("--copies", type=int, default=1, help="endpoints of each kind times this (4: 200 endpoints)")
    ap.add_argument("--default-limits", action="store_true", help="default scan.concurrency (8 per host)")
    args = ap.parse_args()
    copies = max(1, min(args.copies, 8))
    rounds = max(1, min(args.rounds, 20))
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        pki = TestPKI(Path(tmp))
        ports = start_endpoints(stack, pki, Path(tmp), copies)
        plist = sorted(ports)
        truth = Counter(ports.values())
        inv, total = [], []
        services: Counter[str] = Counter()
        bad_rounds = 0  # rounds in which any port was not identified as what it is
        for _ in range(rounds):
            a, b, services = asyncio.run(dcsaudit_round(plist, args.default_limits))
            inv.append(a)
            total.append(b)
            bad_rounds += any(s != EXPECTED[ports[p]] for p, s in last.items())
        wrong = {p: (ports[p], s) for p, s in last.items() if s != EXPECTED[ports[p]]}
        # Silent peers (listeners that never answer, openssl's echo server) cost the read timeout by
        # design; time the answering ones separately so both figures are visible.
        answering = [p for p in plist if ports[p] not in ("silent", "openssl")]
        fast = [asyncio.run(dcsaudit_round(answering, args.default_limits))[1] for _ in range(rounds)]
        print(f"endpoints: {len(plist)} {dict(truth)}")
        print(f"dcsaudit identified: {dict(services)}; not as expected in the last round: {wrong or 'none'}; "
              f"rounds with any port not as expected: {bad_rounds} of {rounds}")
        print("| measurement | median | min | max |\n|---|---|---|---|")
        n = len(plist)
        print(f"| dcsaudit inventory (nmap: SYN scan as root, else connect), {n} ports | {statistics.median(inv):.2f} s | {min(inv):.2f} s | {max(inv):.2f} s |")
        print(f"| dcsaudit inventory + identification, {n} ports | {statistics.median(total):.2f} s | {min(total):.2f} s | {max(total):.2f} s |")
        print(f"| dcsaudit inventory + identification, {len(answering)} answering ports | {statistics.median(fast):.2f} s | {min(fast):.2f} s | {max(fast):.2f} s |")
        if not args.skip_nmap_sv and shutil.which("nmap"):
            sv, note = nmap_sv(plist, args.nmap_timeout)
            print(f"| nmap -sV, same 50 ports (1 run) | {sv:.1f} s | | | ({note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
