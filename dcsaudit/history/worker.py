"""The history store in a child process started with the run, so that importing SQLAlchemy (≈ 0.3 s of CPU)
happens while the audit waits on the network instead of after its last packet (issue 16).

The child imports only the store (SQLAlchemy, no pydantic models) and waits for one job on stdin: where to
store and the run's rows (``fingerprints.run_rows``, computed here from the report), as JSON lines (never on
the command line: a store URL may hold a password). It answers ``got`` once it has the job, then ``ok``,
``failed`` or ``config <message>``; its stderr is ours, so what ``commands.store_run`` says reaches the user
unchanged. A child that is gone before it said ``got`` never saw the run: the run is then stored in this
process, as before. One that is gone after it did may have stored it: that is reported as a store failure,
never retried (a run must not be stored twice). Drift notifications need the report: a run that sends them
stores in-process (``HistoryTarget.store``).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dcsaudit.models.report import Report

# -P: no current directory on the child's sys.path (a directory named dcsaudit there must not be imported).
_ARGV = [sys.executable, "-P", "-m", "dcsaudit.history.worker"]


class StoreWorker:
    """One child for one run: ``store`` once, or ``close`` to end it unused."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            _ARGV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, close_fds=True)

    def store(self, report: Report, url: str, out: Path, quiet: bool, explicit: bool) -> bool | None:
        """As ``commands.store_run`` without notifications; None when the child never got the job (the caller
        then stores the run itself)."""
        from dcsaudit.errors import ConfigError
        from dcsaudit.history.fingerprints import run_rows

        proc, self._proc = self._proc, None
        if proc is None:
            return None
        assert proc.stdin is not None and proc.stdout is not None
        job = {"url": url, "out": str(out), "quiet": quiet, "explicit": explicit}
        try:
            proc.stdin.write(json.dumps(job).encode() + b"\n" + json.dumps(run_rows(report, out)).encode() + b"\n")
            proc.stdin.close()
        except OSError:  # the child is gone (it could not start, or was killed): it has not seen the run
            _end(proc)
            return None
        got = proc.stdout.readline()
        answer = proc.stdout.readline().decode("utf-8", "replace").rstrip("\n")
        _end(proc)
        if got != b"got\n":
            return None
        if answer in ("ok", "failed"):
            return answer == "ok"
        if answer.startswith("config "):
            raise ConfigError(answer.removeprefix("config "))  # as in-process: a bad --store URL exits 2
        print("dcsaudit: the history store's worker ended while storing the run; it may or may not be stored",
              file=sys.stderr)
        return not explicit  # like a store failure: a warning for the default store, exit 3 for one asked for

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _end(proc)


def _end(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start() -> StoreWorker | None:
    """A child for this run's store, or None when none can be started (the run is then stored in-process)."""
    try:
        return StoreWorker()
    except OSError:
        return None


def main() -> None:
    from dcsaudit.errors import ConfigError
    from dcsaudit.history.commands import store_run
    from dcsaudit.history.store import open_store  # noqa: F401 - importing it is the warm-up

    head = sys.stdin.buffer.readline()
    if not head:
        os._exit(0)  # the run ended without storing
    body = sys.stdin.buffer.readline()
    sys.stdout.write("got\n")
    sys.stdout.flush()
    answer = "failed"
    try:
        job = json.loads(head)
        ok = store_run(json.loads(body), job["url"], Path(job["out"]), job["quiet"], None, job["explicit"])
        answer = "ok" if ok else "failed"
    except ConfigError as exc:
        answer = "config " + str(exc).replace("\n", " ")
    except Exception as exc:  # said like any store failure; the parent exits accordingly
        print(f"dcsaudit: history store: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.write(answer + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
