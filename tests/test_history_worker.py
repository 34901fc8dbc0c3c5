"""The history store's worker (issue 16): a child started with the run stores it from its rows, exactly as
the in-process store does; a child that never got the job leaves the run to the parent, stored once; store
errors keep their exit semantics (a bad URL is a config error, an unwritable store asked for fails)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from dcsaudit.config import ConfigError
from dcsaudit.history.commands import HistoryTarget
from dcsaudit.history.store import open_store
from dcsaudit.history.worker import start
from dcsaudit.models.report import Report
from tests.test_history_store import MODERN, ep, finding, report, tls


def _sample() -> Report:
    return report([ep(2762, t=tls(MODERN)), ep(104, service="dicom", plaintext=True)],
                  [finding("tls.no_legacy_protocols", "pass"), finding("dicom.no_plaintext", "fail", gating=True),
                   finding("tls.certificate_valid", "fail", suppressed=True)])


def _stored(url: str) -> list[tuple[object, ...]]:
    with open_store(url) as store:
        runs = store.runs()
        snaps = [store.snapshot(r.id) for r in runs]
    return [(s.run.deployment, s.run.started_at, s.run.finished_at, s.run.passed, s.run.failed, s.run.gating,
             s.run.suppressed, sorted(s.facts.items()), sorted(s.findings.items())) for s in snaps]


def test_the_worker_stores_what_the_in_process_store_stores(tmp_path: Path) -> None:
    # Given a report, stored once in this process and once through a started worker
    rep = _sample()
    inproc, child = f"sqlite:///{tmp_path / 'a.sqlite'}", f"sqlite:///{tmp_path / 'b.sqlite'}"
    with open_store(inproc) as store:
        store.save(rep, tmp_path)
    worker = start()
    assert worker is not None
    # When the worker takes the run
    stored = worker.store(rep, child, tmp_path, True, True)
    # Then it says so, and both stores hold the same run, facts and findings
    assert stored is True
    assert _stored(child) == _stored(inproc) and len(_stored(child)) == 1


def test_a_worker_gone_before_the_job_leaves_the_run_to_the_parent_stored_once(tmp_path: Path) -> None:
    # Given a worker that was killed before the run ended
    worker = start()
    assert worker is not None
    proc = worker._proc
    assert proc is not None
    proc.kill()
    proc.wait(timeout=10)
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    target = HistoryTarget(url, explicit=True, worker=worker)
    # When the run is stored
    ok = target.store(_sample(), tmp_path, quiet=True)
    # Then the parent stored it itself, once
    assert ok is True
    assert len(_stored(url)) == 1


def test_a_bad_store_url_is_still_a_config_error(tmp_path: Path) -> None:
    worker = start()
    assert worker is not None
    with pytest.raises(ConfigError, match="not a database URL"):
        worker.store(_sample(), "no-such-scheme://x", tmp_path, True, True)


def test_an_unwritable_store_asked_for_fails_and_the_default_one_only_warns(tmp_path: Path,
                                                                           capfd: pytest.CaptureFixture[str]) -> None:
    # Given a store path under a regular file (its directory cannot be created)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    url = f"sqlite:///{blocker / 'sub' / 'h.sqlite'}"
    target = HistoryTarget(url, explicit=True)
    # When the worker is asked to store there (explicitly, then as the default store)
    asked = replace(target, worker=start()).store(_sample(), tmp_path, quiet=True)
    default = replace(target, explicit=False, worker=start()).store(_sample(), tmp_path, quiet=True)
    # Then the explicit store fails the run, the default one only warns, as in-process
    assert asked is False and default is True
    err = capfd.readouterr().err
    assert "cannot create the history store's directory" in err and "warning: run not kept" in err


def test_an_unused_worker_ends_when_closed() -> None:
    worker = start()
    assert worker is not None
    proc = worker._proc
    assert proc is not None
    worker.close()
    assert proc.returncode == 0


def test_the_worker_imports_no_report_model() -> None:
    # Given the worker's own imports (what it costs beside the audit), Then no pydantic model is among them
    code = ("import json, sys; import dcsaudit.history.worker as w; import dcsaudit.history.commands, "
            "dcsaudit.history.store; print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.split(".")[0] == "pydantic" or m.startswith("dcsaudit.models")] == []
