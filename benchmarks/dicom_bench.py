"""Benchmark: a full non-intrusive association audit of one AE against local acceptors.

Times ``audit_application_entities`` for one configured AE (baseline, AE title probes, vendor-default
titles, User Identity types 1-5) against real acceptors on 127.0.0.1, interleaving the acceptors over
several rounds, and prints medians as a Markdown table (docs/benchmarks.md keeps them):

- pynetdicom checking Called and Calling AE titles (no identity handler);
- pynetdicom that refuses bad identities (EVT_USER_ID returns False: pynetdicom's (2, 2, 1)), so
  every identity probe is retried once;
- pynetdicom allowing one association (``maximum_associations = 1``);
- DCMTK storescp.

Point PYTHONPATH at another checkout to measure that version with the same script (the old figure in
docs/benchmarks.md was taken that way). Only loopback is touched; loops are bounded. Not a test.

    .venv/bin/python benchmarks/dicom_bench.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.probes.dicom_assoc import audit_application_entities
from tests.peers.dicom_peers import pynetdicom_scp, storescp

LOOPBACK = "127.0.0.1"


def refuse_bad_identity(event: Any) -> tuple[bool, bytes | None]:
    return False, None


def peers(tmp: Path) -> dict[str, tuple[str, Callable[[], AbstractContextManager[int]]]]:
    return {
        "pynetdicom, strict titles": ("TESTSCP", lambda: pynetdicom_scp("TESTSCP", require_called=True,
                                                                        require_calling=["DCSAUDIT"])),
        "pynetdicom, refuses bad identities": ("TESTSCP", lambda: pynetdicom_scp("TESTSCP",
                                                                                 user_id=refuse_bad_identity)),
        "pynetdicom, max 1 association": ("TESTSCP", lambda: pynetdicom_scp("TESTSCP", max_associations=1)),
        "DCMTK storescp": ("STORESCP", lambda: storescp(tmp, ae_title="STORESCP")),
    }


def audit_once(port: int, ae_title: str) -> tuple[float, int, int]:
    cfg = parse_config({
        "deployment": "bench", "hosts": [{"address": LOOPBACK, "tcp_ports": [port]}],
        "application_entities": [{"ae_title": ae_title, "host": LOOPBACK, "port": port}],
        "scan": {"timeouts": {"connect": 2, "dicom": 3}},
    })
    ctx = AuditContext.create(cfg)
    start = time.perf_counter()
    [ae] = asyncio.run(audit_application_entities(ctx, []))
    elapsed = time.perf_counter() - start
    if ae.error:
        raise SystemExit(f"audit failed: {ae.error}")
    return elapsed, ae.associations_used, getattr(ae, "busy_retries", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = peers(Path(tmp))
        times: dict[str, list[float]] = {k: [] for k in table}
        assocs: dict[str, tuple[int, int]] = {}
        for _ in range(args.rounds):
            for name, (title, start) in table.items():  # interleaved: each round visits every peer
                with start() as port:
                    elapsed, used, retries = audit_once(port, title)
                times[name].append(elapsed)
                assocs[name] = (used, retries)
    print("| acceptor | median | min | max | associations (retries) |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        used, retries = assocs[name]
        print(f"| {name} | {statistics.median(ts):.3f} s | {min(ts):.3f} s | {max(ts):.3f} s | {used} ({retries}) |")


if __name__ == "__main__":
    main()
