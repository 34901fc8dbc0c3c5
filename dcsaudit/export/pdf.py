"""annex.pdf: laid out by ``pdf_layout`` (fpdf2), in a worker process when one was started.

A run that asks for a PDF starts the worker when its options are read (:func:`start_worker`): it
imports fpdf2, the report models and the layout, lays out a one-table report (the first use of fpdf2's
and fontTools' code paths) and parses the fonts for the real one, about 2 s of CPU while the audit waits
on the wire; then it waits for the report on its stdin. :func:`submit` hands it the report as JSON and returns at once,
so the DOCX (and the CI formats) are written in the main process while the PDF is laid out on the other
core. Without a worker the PDF is made in process. The worker exits when its stdin closes (the run ended
without asking for the PDF), and never sees more than the report the other outputs are made from.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable

from dcsaudit.models.report import Report

WORKER_TIMEOUT = 120.0  # seconds for one annex (the demo's takes ~1 s): then the worker is killed
_worker: subprocess.Popen[bytes] | None = None
_worker_lock = threading.Lock()


def start_worker() -> None:
    """Start (once) the process that will lay out this run's annex.pdf; harmless when it cannot start."""
    global _worker
    with _worker_lock:
        if _worker is not None and _worker.poll() is None:
            return
        try:
            _worker = subprocess.Popen([sys.executable, "-m", "dcsaudit.export.pdf"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError:
            _worker = None  # submit() lays the PDF out in this process instead


def _take_worker() -> subprocess.Popen[bytes] | None:
    global _worker
    with _worker_lock:
        worker, _worker = _worker, None
    return worker if worker is not None and worker.poll() is None else None


def _in_process(report: Report) -> bytes:
    from dcsaudit.export.pdf_layout import render_pdf as layout  # fpdf2: only when a PDF is asked for

    return layout(report)


def submit(report: Report) -> Callable[[], bytes]:
    """Start laying out the annex; the returned function waits for the PDF's bytes. With a worker the
    layout runs in that process (on the other core); otherwise in this one, when the result is asked for."""
    worker = _take_worker()
    if worker is None:
        return lambda: _in_process(report)
    payload = report.model_dump_json().encode("utf-8")
    box: dict[str, tuple[bytes, bytes]] = {}
    errors: list[str] = []
    dead: list[OSError] = []

    def talk() -> None:
        # The report goes in one buffered write (a loop in C that lets go of the interpreter lock), not
        # through communicate(input): that writes 512 bytes per turn of a Python loop, each needing the
        # lock the DOCX being made meanwhile holds, and the worker reads the whole report before it starts.
        assert worker.stdin is not None
        try:
            worker.stdin.write(payload)
            worker.stdin.flush()
        except OSError as exc:  # the worker died before it read the report
            dead.append(exc)
            worker.kill()
            worker.communicate()
            return
        try:
            box["out"] = worker.communicate(timeout=WORKER_TIMEOUT)  # closes stdin, then reads the PDF
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()
            errors.append(f"the PDF worker did not finish within {WORKER_TIMEOUT:.0f} s")
        except OSError as exc:
            errors.append(f"the PDF worker failed: {exc.strerror or exc}")

    thread = threading.Thread(target=talk, name="pdf-worker", daemon=True)
    thread.start()

    def result() -> bytes:
        thread.join()
        if dead:
            return _in_process(report)
        if errors or "out" not in box:
            raise RuntimeError(errors[0] if errors else "the PDF worker gave no result")
        out, err = box["out"]
        if worker.returncode != 0 or not out.startswith(b"%PDF"):
            # The worker says the exception type only: its message could quote the report.
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            raise RuntimeError(f"the PDF worker failed: {last[0][:300]}")
        return out

    return result


def _warm_up_report() -> Report:
    """A one-table report with a finding and an evidence item: every kind of thing the layout draws."""
    from datetime import UTC, datetime

    from dcsaudit.models.core import Annex, AnnexSection, AnnexTable, Cell, Evidence, Finding, Provenance
    from dcsaudit.models.report import RunInfo

    at = datetime.now(UTC)
    table = AnnexTable(id="N.6-1", title="warm-up", columns=["Parameter", "Value"],
                       rows=[[Cell(value="p", provenance=Provenance.LABEL),
                              Cell(value="✔ ✘ ∅ v", provenance=Provenance.VERIFIED, evidence=["ev-0001"])]])
    return Report(deployment="warm-up", started_at=at, finished_at=at,
                  run=RunInfo(tool_version="0", command="scan", policy="default"),
                  findings=[Finding(check_id="w.w", title="w", status="fail", severity="high", target="t",
                                    summary="s", evidence=["ev-0001"], gating=True)],
                  evidence=[Evidence(id="ev-0001", probe="w", target="t", at=at, ok=True, summary="s",
                                     data={"k": "v"})],
                  annex=Annex(sections=[AnnexSection(id="N.6.1", title="warm-up", tables=[table])]))


def _worker_main() -> int:
    """``python -m dcsaudit.export.pdf``: import the layout, warm it up and parse the fonts, then lay out
    the report read from stdin."""
    from dcsaudit.export.pdf_layout import Writer
    from dcsaudit.export.pdf_layout import render_pdf as layout

    with contextlib.suppress(Exception):  # a failure here shows again, for real, below
        layout(_warm_up_report())  # first use of fpdf2's paths and fontTools' subsetter: not on the clock
    writer = Writer()
    payload = sys.stdin.buffer.read()
    if not payload:
        return 0  # the run ended without a PDF
    try:
        pdf = layout(Report.model_validate_json(payload), writer)
    except Exception as exc:  # the message could quote the report: say the type only
        print(f"{type(exc).__name__} while laying out the annex", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(pdf)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
