"""Benchmark: the history store (issue 13). Storing a 50-endpoint run, diffing two such runs, and the
store's size per run, on SQLite and on a real PostgreSQL server (initdb into a temporary directory,
127.0.0.1 only, stopped at the end).

Run: ``.venv/bin/python -m benchmarks.history_bench [--runs 20]`` from the repo root. Prints a
Markdown table (figures for docs/benchmarks.md). No network traffic beyond loopback PostgreSQL.

The run is synthetic but made of the real models: 50 TLS endpoints (DICOM over TLS, each with two TLS
versions, suites, a certificate and two profile verdicts), 25 AEs, and 20 findings per endpoint, the
size of a nightly scan of a radiology segment. Between the two diffed runs five endpoints change.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.peers, when run as a script

from dcsaudit.history.diff import diff_runs
from dcsaudit.history.store import Store, open_store
from dcsaudit.models.core import Finding
from dcsaudit.models.dicom import ApplicationEntity
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.models.report import Report, RunInfo
from dcsaudit.models.tls import CertificateInfo, ProfileVerdict, TlsResult

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
SUITES12 = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
SUITES13 = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
CHECKS = [f"bench.check_{i:02d}" for i in range(20)]


def make_run(night: int, changed: int = 0) -> Report:
    endpoints, aes, findings = [], [], []
    for i in range(50):
        host, port = f"10.20.{i // 10}.{10 + i % 10}", 2762
        legacy = i < changed  # the drift: TLS 1.1 switched on, a new certificate
        protocols = {"TLSv1.2": SUITES12, "TLSv1.3": SUITES13, **({"TLSv1.1": SUITES12[:1]} if legacy else {})}
        cert = CertificateInfo(
            subject=f"CN=host{i}", issuer="CN=Hospital CA", serial=f"{i:04x}", sha256=f"{i + 1000 * legacy:064x}",
            key_type="EC", key_bits=256, signature_algorithm="ecdsa-with-SHA256", signature_hash="sha256",
            not_before="2026-01-01T00:00:00+00:00", not_after="2027-06-01T00:00:00+00:00", days_to_expiry=200,
            expired=False, not_yet_valid=False, self_signed=False)
        verdict = ProfileVerdict(conforms=not legacy, verdict="does_not_conform" if legacy else "conforms",
                                 reasons=["TLS 1.1 accepted"] if legacy else [])
        tls = TlsResult(protocols=protocols, certificate=cert, client_certificate="required",
                        profiles={"BCP195_RFC8996": verdict, "MODIFIED_BCP195_RFC8996": verdict})
        endpoints.append(Endpoint(host=host, port=port, protocol="tcp", state="open", service="dicom-tls",
                                  plaintext_dicom=False, tls=tls, evidence=[f"ev-{night}-{i}"]))
        if i % 2 == 0:
            aes.append(ApplicationEntity(ae_title=f"AE{i}", host=host, port=port, tls=True, verification=True,
                                         accepts_any_calling_ae=False, accepts_any_called_ae=False))
        for c in CHECKS:
            failing = legacy and c == "bench.check_00"
            findings.append(Finding(check_id=c, title=c, status="fail" if failing else "pass", severity="high",
                                    target=f"{host}:{port}/tcp", summary="synthetic", gating=failing))
    at = T0 + timedelta(days=night)
    return Report(deployment="benchmark segment", started_at=at, finished_at=at + timedelta(minutes=20),
                  run=RunInfo(tool_version="bench", command="scan", policy="default", exit_status=0),
                  endpoints=endpoints, application_entities=aes, findings=findings)


def measure(store: Store, runs: int) -> tuple[list[float], list[float], int, int]:
    store_times, diff_times = [], []
    ids = []
    for n in range(runs):
        report = make_run(n, changed=5 if n % 2 else 0)
        t = time.perf_counter()
        ids.append(store.save(report))
        store_times.append(time.perf_counter() - t)
    for a, b in itertools.pairwise(ids):
        t = time.perf_counter()
        d = diff_runs(store.snapshot(a), store.snapshot(b))
        diff_times.append(time.perf_counter() - t)
        assert d.regression == (b % 2 == 0)  # runs 2, 4, … (ids) carry the drift
    facts = len(store.snapshot(ids[-1]).facts)
    return store_times, diff_times, facts, len(make_run(0).findings)


def row(name: str, store_times: list[float], diff_times: list[float], size: str) -> str:
    return (f"| {name} | {statistics.median(store_times) * 1000:.0f} ms (max {max(store_times) * 1000:.0f}) | "
            f"{statistics.median(diff_times) * 1000:.0f} ms (max {max(diff_times) * 1000:.0f}) | {size} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    lines = ["| store | store one 50-endpoint run (median) | diff two runs (median) | size per run |",
             "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "h.sqlite"
        with open_store(f"sqlite:///{path}") as store:
            empty = path.stat().st_size
            st, dt, facts, findings = measure(store, args.runs)
        per_run = (path.stat().st_size - empty) / args.runs
        lines.append(row("SQLite (file)", st, dt, f"{per_run / 1024:.0f} KiB"))
    if not args.no_postgres:
        from tests.peers.postgres import postgres_server

        with postgres_server() as pg:
            url = pg.new_database()
            with open_store(url) as store:
                import sqlalchemy

                def size() -> int:
                    with store.engine.connect() as c:
                        return int(c.execute(sqlalchemy.text("SELECT pg_database_size(current_database())"))
                                   .scalar_one())

                before = size()
                st, dt, _, _ = measure(store, args.runs)
                per_run = (size() - before) / args.runs
            lines.append(row("PostgreSQL 15 (loopback)", st, dt, f"{per_run / 1024:.0f} KiB"))
    print(f"{args.runs} runs of 50 endpoints, 25 AEs, {findings} findings and {facts} facts each; "
          f"{os.cpu_count()} cores")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
