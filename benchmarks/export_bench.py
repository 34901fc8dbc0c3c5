"""Time of each output format for one report (issue 14): what ``--format``, ``--redact`` and ``--sign``
add to a run. Run by hand (not a timed test):

    .venv/bin/dcsaudit demo --out /tmp/demo -q --force        # once: a real report
    .venv/bin/python benchmarks/export_bench.py /tmp/demo/report.json --rounds 3

"all formats, warm worker" minus "json,md,html (default)" is what a run with ``--format …,docx,pdf``
pays after its audit: the PDF worker process (started with the options, importing during the audit)
lays the annex out while this process renders the other files. ``--e2e N`` also times the command a
user runs, ``dcsaudit demo`` with the default formats and with every format, interleaved, N rounds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from dcsaudit.export import start_documents
from dcsaudit.export.bundle import Signer, write_bundle
from dcsaudit.export.pdf import start_worker
from dcsaudit.export.redact import redact
from dcsaudit.models.report import Report
from dcsaudit.output import render, write_outputs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("report", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm", type=float, default=3.0, help="seconds the worker gets to import (default 3)")
    ap.add_argument("--e2e", type=int, default=0, help="rounds of `dcsaudit demo` with and without docx,pdf")
    args = ap.parse_args()
    report = Report.model_validate_json(args.report.read_text(encoding="utf-8"))
    import docx  # noqa: F401  # imports are paid once per process; timed separately below
    t0 = time.perf_counter()
    import fpdf  # noqa: F401
    print(f"import fpdf: {time.perf_counter() - t0:.2f} s")
    key = ed25519.Ed25519PrivateKey.generate()
    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args)
        times.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for _ in range(args.rounds):
        timed("html (annex.html.j2)", render, report, "annex.html.j2", True)
        timed("md (annex.md.j2)", render, report, "annex.md.j2", False)
        timed("docx", lambda: start_documents(report, ("docx",))())
        cpu = time.process_time()
        timed("pdf (in process)", lambda: start_documents(report, ("pdf",))())
        times.setdefault("pdf (in process), CPU", []).append(time.process_time() - cpu)
        timed("redact (collect + replace)", redact, report)
        with tempfile.TemporaryDirectory() as d:
            paths = timed("write json,md,html (default)", write_outputs, report, Path(d))
            timed("sign (manifest + Ed25519)", write_bundle, report, Path(d), paths.values(), Signer(key))
        start_worker()
        time.sleep(args.warm)  # the audit's time on the wire, in a real run
        with tempfile.TemporaryDirectory() as d:
            timed("write every format, warm PDF worker", write_outputs, report, Path(d),
                  ("json", "md", "html", "docx", "pdf"))
    print(f"{len(report.annex.sections)} sections, {sum(len(s.tables) for s in report.annex.sections)} tables, "
          f"{len(report.evidence)} evidence items; {args.rounds} rounds")
    for i in range(args.e2e):
        for formats in (("json,md,html", "json,md,html,docx,pdf") if i % 2 == 0 else
                        ("json,md,html,docx,pdf", "json,md,html")):
            with tempfile.TemporaryDirectory() as d:
                cmd = [str(Path(sys.executable).with_name("dcsaudit")), "demo", "--out", d, "-q", "--force",
                       "--store", "none", "--format", formats]
                timed(f"`dcsaudit demo --format {formats}`", lambda c=cmd: subprocess.run(c, timeout=600, check=False))
    print("| step | median | min | max |\n|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} s | {min(values):.2f} s | {max(values):.2f} s |")


if __name__ == "__main__":
    main()
