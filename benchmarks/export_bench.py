"""Time of each output format for one report (issue 14): what ``--format``, ``--redact`` and ``--sign``
add to a run. Run by hand (not a timed test):

    .venv/bin/dcsaudit demo --out /tmp/demo -q --force        # once: a real report
    .venv/bin/python benchmarks/export_bench.py /tmp/demo/report.json --rounds 3

"docx + pdf (warm worker)" is what a run with ``--format …,docx,pdf`` pays after its audit: the PDF
worker process (started with the options, warmed up during the audit) lays the annex out while the
DOCX is written in this process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from dcsaudit.export import render_documents
from dcsaudit.export.bundle import Signer, write_bundle
from dcsaudit.export.pdf import start_worker
from dcsaudit.export.redact import redact
from dcsaudit.models.report import Report
from dcsaudit.output import render, write_outputs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("report", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm", type=float, default=5.0, help="seconds the worker gets to warm up (default 5)")
    args = ap.parse_args()
    report = Report.model_validate_json(args.report.read_text(encoding="utf-8"))
    import docx  # noqa: F401  # imports are paid once per process; timed separately below
    t0 = time.perf_counter()
    import weasyprint  # type: ignore[import-untyped]  # noqa: F401
    print(f"import weasyprint: {time.perf_counter() - t0:.2f} s")
    key = ed25519.Ed25519PrivateKey.generate()
    times: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args)
        times.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for _ in range(args.rounds):
        html = timed("html (annex.html.j2)", render, report, "annex.html.j2", True)
        timed("md (annex.md.j2)", render, report, "annex.md.j2", False)
        timed("docx", render_documents, report, ("docx",), lambda h=html: h)
        timed("pdf (WeasyPrint, in process)", render_documents, report, ("pdf",), lambda h=html: h)
        start_worker()
        time.sleep(args.warm)  # the audit's time on the wire, in a real run
        timed("docx + pdf (warm worker)", render_documents, report, ("docx", "pdf"), lambda h=html: h)
        timed("redact (collect + replace)", redact, report)
        with tempfile.TemporaryDirectory() as d:
            paths = timed("write json,md,html (default)", write_outputs, report, Path(d))
            timed("sign (manifest + Ed25519)", write_bundle, report, Path(d), paths.values(), Signer(key))
    print(f"{len(report.annex.sections)} sections, {sum(len(s.tables) for s in report.annex.sections)} tables, "
          f"{len(report.evidence)} evidence items; {args.rounds} rounds")
    print("| step | median | min | max |\n|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} s | {min(values):.2f} s | {max(values):.2f} s |")


if __name__ == "__main__":
    main()
