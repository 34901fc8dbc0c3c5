"""Benchmark: full TLS audit of 20 loopback endpoints vs the sslyze CLI (same endpoints) and testssl.sh (subset).

Run: ``.venv/bin/python -m benchmarks.tls_bench [--runs 3] [--testssl 3]`` from the repo root. Not a
timed test: it prints medians and rewrites docs/benchmarks-tls.md. Traffic goes to 127.0.0.1 only.

Before/after a change: ``.venv/bin/python benchmarks/tls_bench.py --compare /tmp/wt-before [--runs 5]``
audits each of the 20 endpoints alone, alternating the code of the other checkout (a ``git worktree``
of the base commit) and of this one run after run, each in a fresh process with fresh peers, and prints
per-endpoint medians as a Markdown table (``--worker DIR`` is one such process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.peers, when run as a script
if "--worker" in sys.argv:  # audit with the dcsaudit of another checkout (the "before" of --compare)
    sys.path.insert(0, sys.argv[sys.argv.index("--worker") + 1])

from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.tls import TlsResult
from dcsaudit.probes.tls import TlsAuditOptions, audit_tls
from tests.peers.tls_peers import RsaPKI, openssl_server, orthanc_tls, rsyslog_gtls, storescp_tls

ROOT = Path(__file__).resolve().parents[1]
NO_RSYSLOG = "no-rsyslog"
SSLYZE_COMMANDS = ["--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3", "--certinfo",
                   "--elliptic_curves", "--heartbleed", "--openssl_ccs", "--reneg", "--compression",
                   "--fallback", "--ems"]


def start_peers(stack: ExitStack, pki: RsaPKI) -> list[tuple[str, int]]:
    peers: list[tuple[str, int]] = []
    openssl_variants: list[tuple[str, dict[str, object]]] = [
        ("openssl modern", {}),
        ("openssl serverpref", {"ciphers": "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256", "serverpref": True}),
        ("openssl client order", {"ciphers": "ECDHE-RSA-AES128-GCM-SHA256:AES256-SHA:DHE-RSA-AES128-SHA256"}),
        ("openssl tls1.2 only", {"versions": ("-no_tls1_3",)}),
        ("openssl tls1.3 only", {"versions": ("-tls1_3",)}),
        ("openssl client cert required", {"client_auth": "required"}),
        ("openssl client cert optional", {"client_auth": "optional"}),
        ("openssl tls1.2 cert required", {"client_auth": "required", "versions": ("-no_tls1_3",)}),
        ("openssl legacy", {"ciphers": "ALL:@SECLEVEL=0", "versions": ("-tls1",)}),
        ("openssl chacha first", {"ciphers": "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256",
                                  "serverpref": True}),
    ]
    for name, kw in openssl_variants:
        peers.append((name, stack.enter_context(openssl_server(pki, **kw))))  # type: ignore[arg-type]
    for prof in ("+py", "+px", "+pz", "+pa", "+pn"):
        peers.append((f"storescp {prof}", stack.enter_context(storescp_tls(pki, prof))))
    peers.append(("orthanc cert required", stack.enter_context(orthanc_tls(pki, remote_certificate_required=True))))
    peers.append(("orthanc cert optional", stack.enter_context(orthanc_tls(pki, remote_certificate_required=False))))
    peers.append(("orthanc cert required #2", stack.enter_context(orthanc_tls(pki, remote_certificate_required=True))))
    peers.append(("rsyslog gtls", stack.enter_context(rsyslog_gtls(pki))))
    peers.append(("rsyslog gtls #2", stack.enter_context(rsyslog_gtls(pki))))
    return peers


async def audit_all(ports: list[int], ca: Path, opts: TlsAuditOptions) -> tuple[float, list[TlsResult]]:
    # All peers share 127.0.0.1, so the default per-host bound (8 connections) applies to all 20
    # endpoints together: a conservative setting (20 real hosts would get 8 each).
    cfg = parse_config({"deployment": "bench", "hosts": [{"address": "127.0.0.1"}],
                        "credentials": {"ca_file": str(ca)}})
    ctx = AuditContext.create(cfg)
    eps = [Endpoint(host="127.0.0.1", port=p, protocol="tcp", state="open", service="tls") for p in ports]
    if _needs_sslyze_children(opts):
        await _sslyze_children_ready(ctx, len(ports))
    t = time.perf_counter()
    results = await asyncio.gather(*(audit_tls(ctx, e, opts) for e in eps))
    dt = time.perf_counter() - t
    pool = getattr(ctx, "sslyze_workers", None)
    if pool is not None:
        await pool.close()  # the spare child started for the next endpoint
    return dt, list(results)


def _needs_sslyze_children(opts: TlsAuditOptions) -> bool:
    """Older checkouts ran every vulnerability test in sslyze's child; since issue 16 only ROBOT does."""
    try:
        import dcsaudit.probes.tls.vulns_raw  # noqa: F401
    except ImportError:
        return opts.vulnerabilities
    return opts.vulnerabilities and opts.robot


SSLYZE_IMPORT_WAIT = 1.5  # s: a child imports sslyze in about 0.5 s of CPU on this machine kind


async def _sslyze_children_ready(ctx: AuditContext, endpoints: int) -> None:
    """What `dcsaudit scan` does before its TLS stage: sslyze's child processes are started during the
    inventory and import sslyze while identification and the DICOM stage wait on the wire, so the TLS
    stage finds them ready. Outside the timed part, as the code before the child process (sslyze imported
    in process, during the warm-up audit) had it. Code without the pool (older checkouts) skips this."""
    try:
        from dcsaudit.probes.tls.vulns import WorkerPool
    except ImportError:
        return
    ctx.sslyze_workers = WorkerPool(endpoints)
    await ctx.sslyze_workers.prewarm()
    await asyncio.sleep(SSLYZE_IMPORT_WAIT)


def timed(cmd: list[str], timeout: float) -> float:
    """Wall time of a command; a run cut at ``timeout`` counts as ``inf`` (reported as such)."""
    t = time.perf_counter()
    try:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return float("inf")
    return time.perf_counter() - t


def _fmt(v: float, limit: float) -> str:
    return f"> {limit:.0f} s (cut)" if v == float("inf") else f"{v:.2f} s"


def worker(vulnerabilities: bool) -> int:
    """One process of --compare: fresh peers, each endpoint audited alone; prints {name: seconds} as JSON."""
    import json

    import dcsaudit
    from tests.peers.common import TestPKI

    pki = RsaPKI(Path(tempfile.mkdtemp(prefix="tlsbench-")))
    ec = TestPKI(Path(tempfile.mkdtemp(prefix="tlsbench-ec-")))
    opts = TlsAuditOptions(vulnerabilities=vulnerabilities)
    out: dict[str, float] = {}
    handshakes: dict[str, int] = {}
    with ExitStack() as stack:
        peers = start_peers(stack, pki)
        # Issue 11: an ECDSA P-256 server whose TLS 1.2 groups need the certificate's curve offered.
        peers.append(("openssl ECDSA P-256, X25519:P-256 serverpref", stack.enter_context(openssl_server(
            ec, serverpref=True, extra=("-groups", "X25519:P-256")))))
        asyncio.run(audit_all([peers[0][1]], pki.ca_file, opts))  # warm-up: imports, registries
        for name, port in peers:
            dt, res = asyncio.run(audit_all([port], pki.ca_file, opts))
            out[name], handshakes[name] = dt, res[0].handshakes
    print(json.dumps({"code": str(Path(dcsaudit.__file__).parent), "times": out, "handshakes": handshakes}))
    return 0


def compare(before: Path, runs: int, vulnerabilities: bool) -> str:
    """Interleaved per-endpoint medians: before (the other checkout), after (this one), run after run."""
    import json

    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    shakes: dict[str, dict[str, list[int]]] = {"before": {}, "after": {}}
    for i in range(runs):
        for label, code in (("before", before), ("after", ROOT)) if i % 2 == 0 else (("after", ROOT), ("before", before)):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(code)]
            if not vulnerabilities:
                cmd.append("--no-vulns")
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
            got = json.loads(p.stdout.strip().splitlines()[-1])
            assert Path(got["code"]).resolve() == (code / "dcsaudit").resolve(), got["code"]
            for name, dt in got["times"].items():
                times[label].setdefault(name, []).append(dt)
                shakes[label].setdefault(name, []).append(got["handshakes"][name])
            print(label, i, file=sys.stderr, flush=True)
    rows = ["| Endpoint | before (median / min) | after (median / min) | change of median | connections before → after |",
            "|---|---|---|---|---|"]
    for name in times["after"]:
        tb, ta = times["before"][name], times["after"][name]
        b, a = statistics.median(tb), statistics.median(ta)
        hb, ha = statistics.median(shakes["before"][name]), statistics.median(shakes["after"][name])
        rows.append(f"| {name} | {b:.3f} / {min(tb):.3f} s | {a:.3f} / {min(ta):.3f} s | {100 * (a - b) / b:+.0f} % "
                    f"| {hb:.0f} → {ha:.0f} |")
    return "\n".join(rows)


def main() -> int:
    if "--worker" in sys.argv:
        return worker("--no-vulns" not in sys.argv)
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare", type=Path, help="checkout to compare with (per-endpoint, interleaved)")
    ap.add_argument("--no-vulns", action="store_true", help="--compare: without sslyze's vulnerability plugins")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--testssl", type=int, default=2, help="endpoints for testssl.sh (it takes ~1 min each)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--sslyze-timeout", type=float, default=240)
    args = ap.parse_args()
    if args.compare is not None:
        print(compare(args.compare.resolve(), args.runs, not args.no_vulns))
        return 0
    sslyze = str(ROOT / ".venv" / "bin" / "sslyze")
    pki = RsaPKI(Path(tempfile.mkdtemp(prefix="tlsbench-")))
    lines: list[str] = []
    # Fresh peers for every measurement: single-threaded peers (s_server, storescp) and small thread
    # pools (Orthanc) carry state from one scanner to the next (held or half-closed connections).
    fig: dict[str, list[float]] = {k: [] for k in ("ours", "ours_novuln", "sslyze20", "ours1", "sslyze1",
                                                    "ours_orthanc", "sslyze_orthanc", "ours18", "sslyze18")}
    results: list[TlsResult] = []
    peers: list[tuple[str, int]] = []

    def measure(key: str, fn: Callable[[list[tuple[str, int]]], float]) -> None:
        with ExitStack() as stack:
            fresh = start_peers(stack, pki)
            fig[key].append(fn(fresh))
        print(key, round(fig[key][-1], 2), file=sys.stderr, flush=True)

    def pick(fresh: list[tuple[str, int]], only: str | None) -> list[tuple[str, int]]:
        """One named endpoint, all 20, or (only="no-rsyslog") the 18 that sslyze can finish."""
        if only == NO_RSYSLOG:
            return [(n, p) for n, p in fresh if not n.startswith("rsyslog")]
        return [(n, p) for n, p in fresh if only is None or n == only]

    def ours(opts: TlsAuditOptions, only: str | None = None) -> Callable[[list[tuple[str, int]]], float]:
        def run(fresh: list[tuple[str, int]]) -> float:
            nonlocal results, peers
            sel = pick(fresh, only)
            dt, res = asyncio.run(audit_all([p for _n, p in sel], pki.ca_file, opts))
            if only is None and opts.vulnerabilities:
                results, peers = res, sel
            return dt
        return run

    def sslyze_on(only: str | None, limit: float) -> Callable[[list[tuple[str, int]]], float]:
        def run(fresh: list[tuple[str, int]]) -> float:
            targets = [f"127.0.0.1:{p}" for _n, p in pick(fresh, only)]
            return timed([sslyze, *SSLYZE_COMMANDS, "--quiet", *targets], limit)
        return run

    for _ in range(args.runs):
        measure("ours", ours(TlsAuditOptions()))
        measure("ours_novuln", ours(TlsAuditOptions(vulnerabilities=False)))
        measure("ours1", ours(TlsAuditOptions(), "openssl modern"))
        measure("sslyze1", sslyze_on("openssl modern", 60))
        measure("ours_orthanc", ours(TlsAuditOptions(), "orthanc cert optional"))
        measure("sslyze_orthanc", sslyze_on("orthanc cert optional", 60))
        measure("ours18", ours(TlsAuditOptions(), NO_RSYSLOG))
        measure("sslyze18", sslyze_on(NO_RSYSLOG, args.sslyze_timeout))
    measure("sslyze20", sslyze_on(None, args.sslyze_timeout))
    med = {k: statistics.median(v) for k, v in fig.items() if v}
    hs = sum(r.handshakes for r in results)
    errors = [(n, r.error) for (n, _p), r in zip(peers, results, strict=True) if r.error]
    testssl_times: list[tuple[str, float]] = []
    exe = shutil.which("testssl") or shutil.which("testssl.sh")
    if exe and args.testssl:
        with ExitStack() as stack:
            fresh = start_peers(stack, pki)
            for name, port in fresh[: args.testssl]:
                print(f"testssl {name}", file=sys.stderr, flush=True)
                testssl_times.append((name, timed([exe, "--quiet", "--warnings", "off", "--color", "0", "-p", "-e",
                                                   "-f", "-S", "-H", "-I", f"127.0.0.1:{port}"], 600)))
    lines.append("# TLS audit benchmark (benchmarks/tls_bench.py)\n")
    lines.append(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
                 f"loopback only. Medians of {args.runs} runs, fresh peers for every measurement. Generated {time.strftime('%Y-%m-%d %H:%M')}.\n")
    lines.append("| Scenario | dcsaudit | sslyze CLI |")
    lines.append("|---|---|---|")
    lines.append(f"| 20 endpoints (10 openssl s_server, 5 storescp +tls, 3 Orthanc DICOM-TLS, 2 rsyslog gtls), full audit "
                 f"| {med['ours']:.2f} s | {_fmt(med['sslyze20'], args.sslyze_timeout)} (one run) |")
    lines.append(f"| same 20, dcsaudit without sslyze vulnerability plugins | {med['ours_novuln']:.2f} s | — |")
    lines.append(f"| the 18 without rsyslog (sslyze stalls on rsyslog's gtls input), full audit "
                 f"| {med['ours18']:.2f} s | {_fmt(med['sslyze18'], args.sslyze_timeout)} |")
    lines.append(f"| 1 modern openssl endpoint | {med['ours1']:.2f} s | {_fmt(med['sslyze1'], 60)} |")
    lines.append(f"| 1 Orthanc DICOM-TLS port (optional client certificate) | {med['ours_orthanc']:.2f} s "
                 f"| {_fmt(med['sslyze_orthanc'], 60)} |")
    lines.append("")
    lines.append(f"dcsaudit opened {hs} raw connections for the 20 endpoints (plus sslyze's own for Heartbleed, "
                 f"CCS injection and renegotiation); errors: {errors or 'none'}; "
                 f"incomplete: {[n for (n, _p), r in zip(peers, results, strict=True) if r.warnings] or 'none'}.")
    lines.append(f"sslyze commands: `{' '.join(SSLYZE_COMMANDS)}` (sslyze does not measure suite order, "
                 "TLS 1.3 groups via HRR, nor signature algorithms).")
    if testssl_times:
        lines.append("")
        lines.append("testssl.sh (`-p -e -f -S -H -I`, one endpoint at a time):")
        for name, dt in testssl_times:
            lines.append(f"- {name}: {dt:.1f} s")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        doc = ROOT / "docs" / "benchmarks-tls.md"
        doc.parent.mkdir(exist_ok=True)
        doc.write_text(DESIGN + "\n" + text, encoding="utf-8")
    return 0


DESIGN = """# TLS audit: design and benchmark

## How the TLS audit works (dcsaudit/probes/tls)

- **Raw ClientHello engine** (`wire.py`, `engine.py`): hand-built ClientHellos over asyncio, one connection
  each, reading the ServerHello / HelloRetryRequest / alert / first flight with a deadline. No OpenSSL
  on the client side, so it sees suites OpenSSL lacks (Camellia-GCM, export, SSLv2) and never needs a
  client certificate: servers show their choice before they see ours, so endpoints that require
  mutual TLS are enumerated fully with or without credentials.
- **Enumeration by elimination** (`enumerate.py`): per version, offer every known suite (chunks of 96),
  remove the pick, repeat until refused; the picks are the server order. Offering the accepted list
  reversed tells server order from client order. Versions run in parallel.
- **Groups**: TLS 1.2 one named curve per hello (ServerKeyExchange names it); on an ECDSA-only server
  each hello also offers the certificate's curve after the probed one (OpenSSL needs it to use the
  certificate), and groups a server-ordered server ranks below that curve are reported as not
  observable. DHE size from the ServerKeyExchange prime; TLS 1.3 one group per hello with an empty
  key_share (HelloRetryRequest names it). Ordered by elimination.
- **TLS_FALLBACK_SCSV** (RFC 7507): when two versions are accepted, one hello for the highest accepted
  legacy version (else the second-highest) with the SCSV: inappropriate_fallback = supported, a
  ServerHello = not supported, anything else = undetermined with the answer.
- **Signature schemes**: TLS 1.2 one scheme per hello (ServerKeyExchange shows it); TLS 1.3 one per hello,
  read from the *decrypted* CertificateVerify: `tls13.py` derives the handshake keys from our own
  x25519/P-256 key share (RFC 8446 §7.1), which also yields the TLS 1.3 certificate and CertificateRequest.
- **Client certificates**: TLS 1.2 CertificateRequest is visible in the flight; TLS 1.3 finishes the
  handshake with an empty Certificate and Finished and reads the answer: an alert = required, a
  NewSessionTicket = optional (no 5 s wait). TLS 1.2-only servers that ask: one OpenSSL handshake without
  a certificate. With `credentials.tls_client`, one more handshake proves mutual TLS works.
- **Certificate**: parsed with `cryptography`; chain validated offline with OpenSSL (nassl) against
  `credentials.ca_file`; SANs compared with the scanned address.
- **Vulnerabilities**: sslyze's Python API (Heartbleed, CCS injection, client renegotiation; ROBOT opt-in
  via `TlsAuditOptions(robot=True)` as it costs seconds) in a worker thread, concurrently with the raw
  enumeration. `TlsAuditOptions(vulnerabilities=False)` skips sslyze entirely.
- **Verdicts**: not the probe's. `configs/tls_profiles.yaml` (the TLS rule book: rules as data, each
  citing its source at its source's level, MUST or SHOULD, over the suite registry's attributes) is
  evaluated by `dcsaudit/rules/tls_profiles.py` when the checks and the annex judge the facts: conforms /
  conforms with SHOULD-level deviations / does not conform; retired profiles recognised by fingerprint.
- Every connection holds a `ctx.limiter.slot(host)`; timeouts come from `scan.timeouts` (connect, and
  min(read, tls_handshake) per answer); a first broad hello makes silent or non-TLS ports fail after one
  timeout.

## Reading the figures

- Without sslyze's plugins the audit of one modern endpoint is ~0.1 s of raw handshakes (≈180
  connections: versions, suites by elimination, order, 40 groups, 30 signature schemes, TLS 1.3 flight);
  the rest of the 0.3 s is sslyze's Heartbleed / CCS / renegotiation plugins, which dominate on
  Orthanc (≈2 s: sslyze waits on the optional client-certificate request; our own client-auth
  classification takes one round trip). `TlsAuditOptions(vulnerabilities=False)` removes that cost.
- The 20-endpoint run shares 127.0.0.1, so the default per-host bound (8 connections) applies to all
  endpoints together, and each endpoint is limited to 4 connections at a time (small DICOM thread
  pools). Timed-out handshakes are retried once and reported in `TlsResult.warnings`.
- The sslyze CLI does not finish the 20 endpoints within the cut: run one endpoint at a time, it
  finishes each of the 18 others in 0.5–5.8 s but never returns from either rsyslog gtls input (cut
  at 60 s). The 20-endpoint row is therefore reported as cut, and the 18 endpoints without rsyslog
  give the like-for-like comparison. Peers are restarted for every measurement because scanners
  leave state behind in them.
"""


if __name__ == "__main__":
    sys.exit(main())
