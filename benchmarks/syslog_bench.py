"""Benchmark: dcsaudit's syslog collector against rsyslog, same machine, same run, 127.0.0.1 only.

Three measurements, interleaved with fresh receivers for every run (min/median/max):

1. TLS burst (RFC 5425, octet-counted, one connection) of ``--count`` DICOM audit messages (~1.8 KB)
   to ``dcsaudit listen`` (the CLI, end to end) and to rsyslog's gtls receiver. Time = first byte sent
   until the receiver holds every message (dcsaudit: in received.log; rsyslog: line in its output
   file). Also for dcsaudit: when every message was classified (if within the window), the peak RSS of
   the listen process (VmHWM), and how long after ``--duration`` it exited.
2. UDP: ``--udp-count`` datagrams sent unpaced to ``dcsaudit listen`` and to rsyslog's imudp (both with
   a 32 MiB receive buffer); how many each recorded, and for dcsaudit how many it counted as dropped by
   the kernel.
3. Classification alone, in this process, for reference.

    .venv/bin/python benchmarks/syslog_bench.py [--count 100000] [--udp-count 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcsaudit.audit_originator import AuditOriginator
from dcsaudit.auditmsg import build
from tests.peers.common import LOOPBACK, TestPKI, free_port, wait_for_port
from tests.peers.rsyslog import _rsyslogd, rsyslog_tls_receiver, wait_until

LIMIT_S = 120.0


def one_message() -> bytes:
    """A valid A.5.3.7 DICOM Instances Transferred message of about 1.8 KB."""
    box: list[bytes] = []

    def keep(msg: bytes) -> bool:
        box.append(msg)
        return True

    o = AuditOriginator(LOOPBACK, 9, "udp")
    o.send_raw = keep  # type: ignore[method-assign]
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


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _listen(args: list[str], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "dcsaudit.cli", "listen", *args, "--out", str(out), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _received_log_count(path: Path) -> int:
    """Records in received.log so far (each is a header line, the message, LF)."""
    try:
        with path.open("rb") as f:
            data = f.read()
    except OSError:
        return 0
    n = pos = 0
    while True:
        eol = data.find(b"\n", pos)
        if eol < 0:
            return n
        size = int(data[pos:eol].split(b" ", 1)[0])
        end = eol + 1 + size + 1
        if end > len(data):
            return n
        n, pos = n + 1, end


def bench_listen_tls(pki: TestPKI, payload: bytes, count: int, tmp: Path, duration: float) -> dict[str, float]:
    port, out = free_port(), tmp / f"listen-{time.monotonic_ns()}"
    proc = _listen(["--syslog-tls-port", str(port), "--tls-cert", str(pki.server_chain), "--tls-key",
                    str(pki.server_key), "--duration", str(duration)], out)
    try:
        wait_for_port(port, timeout=30)
        window_start = time.perf_counter()  # the window began at most here
        t0 = send_burst(port, payload, pki.ca_file)
        log = out / "received.log"
        hwm, target = 0, 0
        deadline = time.monotonic() + LIMIT_S
        while time.monotonic() < deadline:
            hwm = max(hwm, _hwm_kb(proc.pid))
            size = log.stat().st_size if log.exists() else 0
            if not target and size > 200:  # every record has the same size here: header, message, LF
                with log.open("rb") as f:
                    target = count * (len(f.readline()) + len(payload) // count - len(str(len(payload) // count)))
            if target and size >= target:
                break
            time.sleep(0.005)
        received_s = time.perf_counter() - t0
        assert _received_log_count(log) >= count, "received.log is short"
        while proc.poll() is None and time.perf_counter() - window_start < duration + 60:
            hwm = max(hwm, _hwm_kb(proc.pid))
            time.sleep(0.02)
        exit_after = time.perf_counter() - window_start - duration
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    trail = json.loads((out / "report.json").read_text())["audit_trail"]
    return {"received_s": received_s, "lost": count - trail["received"], "classified": trail["classified"],
            "rss_mb": hwm / 1024, "exit_after_s": exit_after, "report_mb": (out / "report.json").stat().st_size / 1e6}


def bench_rsyslog_tls(pki: TestPKI, payload: bytes, count: int, workdir: Path) -> dict[str, float]:
    with rsyslog_tls_receiver(workdir, ca_file=pki.ca_file, server_cert=pki.server_chain,
                              server_key=pki.server_key) as rs:
        time.sleep(0.3)  # let it log the readiness probe's aborted connection first
        t0 = send_burst(rs.port, payload, pki.ca_file)
        assert rs.out_file is not None
        out, target = rs.out_file, count * (len(payload) // count - len(str(len(payload) // count)))  # msg + LF each
        wait_until(lambda: out.exists() and out.stat().st_size >= target, LIMIT_S, interval=0.005)
        elapsed = time.perf_counter() - t0
        got = len(rs.received_lines())
    return {"received_s": elapsed, "lost": count - got}


def _udp_blast(port: int, msg: bytes, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for _ in range(count):
            u.sendto(msg, (LOOPBACK, port))


def bench_listen_udp(msg: bytes, count: int, tmp: Path) -> dict[str, float]:
    port, out = free_port(kind=socket.SOCK_DGRAM), tmp / f"udp-{time.monotonic_ns()}"
    proc = _listen(["--syslog-udp-port", str(port), "--duration", "4"], out)
    try:
        hexport = f"{port:04X}"
        wait_until(lambda: any(line.split()[1].endswith(hexport) for line in
                               Path("/proc/net/udp").read_text().splitlines()[1:]), 30)
        time.sleep(0.3)
        _udp_blast(port, msg, count)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    trail = json.loads((out / "report.json").read_text())["audit_trail"]
    return {"recorded": trail["received"], "kernel_drops": trail["dropped"].get("udp_kernel_drops", 0),
            "rcvbuf": trail["udp_receive_buffer"] or 0}


def bench_rsyslog_udp(msg: bytes, count: int, workdir: Path) -> dict[str, float]:
    workdir.mkdir(parents=True, exist_ok=True)
    port, ctl = free_port(kind=socket.SOCK_DGRAM), free_port()
    out = workdir / "udp.log"
    conf = "\n".join([
        f'global(workDirectory="{workdir}" maxMessageSize="64k")',
        'template(name="raw" type="string" string="%rawmsg%\\n")',
        'module(load="imudp")', 'module(load="imtcp")',
        # The same receive buffer as dcsaudit asks for (32 MiB; forced past rmem_max when privileged).
        f'input(type="imudp" port="{port}" address="{LOOPBACK}" ruleset="store" rcvbufSize="32m")',
        f'input(type="imtcp" port="{ctl}" address="{LOOPBACK}" ruleset="store")',  # readiness only
        f'ruleset(name="store") {{ action(type="omfile" file="{out}" template="raw") }}',
    ]) + "\n"
    with _rsyslogd(workdir, conf, ctl):
        time.sleep(0.5)
        _udp_blast(port, msg, count)
        time.sleep(3.0)
        got = len(out.read_bytes().splitlines()) if out.exists() else 0
    return {"recorded": got}


def _fmt(values: list[float], unit: str = "s", digits: int = 2) -> str:
    return (f"{statistics.median(values):.{digits}f} {unit} (min {min(values):.{digits}f}, "
            f"max {max(values):.{digits}f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--udp-count", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=0.0, help="listen --duration (default: sized to --count)")
    args = ap.parse_args()
    msg = one_message()
    payload = build.octet_frame(msg) * args.count
    duration = args.duration or max(8.0, args.count / 10_000)
    print(f"message {len(msg)} octets, {args.count} messages, {len(payload) / 1e6:.1f} MB per burst; "
          f"listen --duration {duration:.0f}; {os.cpu_count()} cores")
    res: dict[str, list[dict[str, float]]] = {"listen": [], "rsyslog": [], "listen_udp": [], "rsyslog_udp": []}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "pki").mkdir()
        pki = TestPKI(tmp / "pki")
        for run in range(args.runs):
            res["listen"].append(bench_listen_tls(pki, payload, args.count, tmp, duration))
            res["rsyslog"].append(bench_rsyslog_tls(pki, payload, args.count, tmp / f"rs{run}"))
            res["listen_udp"].append(bench_listen_udp(msg, args.udp_count, tmp))
            res["rsyslog_udp"].append(bench_rsyslog_udp(msg, args.udp_count, tmp / f"rsu{run}"))
            print(f"run {run + 1}: " + "; ".join(f"{k} {v[-1]}" for k, v in res.items()), flush=True)
    from datetime import UTC, datetime

    from dcsaudit.auditmsg.classify import classify

    n = min(args.count, 5000)
    t0 = time.perf_counter()
    for _ in range(n):
        classify(msg, transport="tls", peer="127.0.0.1:1", received_at=datetime.now(UTC), framing="octet-counting")
    per = (time.perf_counter() - t0) / n
    lis, rs = res["listen"], res["rsyslog"]
    print(f"\nTLS {args.count} messages, time until all received:")
    print(f"  dcsaudit listen  {_fmt([r['received_s'] for r in lis])}, lost max {max(r['lost'] for r in lis):.0f}")
    print(f"  rsyslog          {_fmt([r['received_s'] for r in rs])}, lost max {max(r['lost'] for r in rs):.0f}")
    ratio = statistics.median(r["received_s"] for r in rs) / statistics.median(r["received_s"] for r in lis)
    print(f"  rate: dcsaudit = {ratio:.2f} x rsyslog (medians)")
    print(f"  classified by the end of the window: {', '.join(str(int(r['classified'])) for r in lis)}")
    print(f"  listen peak RSS {_fmt([r['rss_mb'] for r in lis], 'MB', 0)}; exit after --duration "
          f"{_fmt([r['exit_after_s'] for r in lis])}; report.json {_fmt([r['report_mb'] for r in lis], 'MB', 1)}")
    print(f"UDP {args.udp_count} unpaced datagrams recorded:")
    print(f"  dcsaudit listen  {', '.join(str(int(r['recorded'])) for r in res['listen_udp'])} "
          f"(kernel drops counted: {', '.join(str(int(r['kernel_drops'])) for r in res['listen_udp'])}; "
          f"SO_RCVBUF {int(res['listen_udp'][0]['rcvbuf'])})")
    print(f"  rsyslog          {', '.join(str(int(r['recorded'])) for r in res['rsyslog_udp'])}")
    print(f"classification alone: {per * 1e6:.0f} µs a message ({1 / per:.0f}/s in one process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
