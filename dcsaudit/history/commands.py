"""Command-line glue for the history store: what ``scan``/``demo`` do with ``--store``, ``--suppressions``,
``--fail-on`` (their options are declared in ``options.py``), storing the run, and the ``history`` and ``diff``
commands. Kept here so cli.py only wires."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcsaudit.errors import ConfigError  # light: no pydantic
from dcsaudit.history.options import STORE_ENV

if TYPE_CHECKING:
    from dcsaudit.config import NotifyOptions
    from dcsaudit.history.store import Store
    from dcsaudit.history.worker import StoreWorker
    from dcsaudit.models.report import Report
    from dcsaudit.policy import Policy
    from dcsaudit.suppressions import Suppression

DEFAULT_STORE_NAME = "dcsaudit-history.sqlite"


def run_store_url(args: argparse.Namespace, out: Path, per_run: bool, default_on: bool) -> str | None:
    """The store a scan writes to, or None. Explicit --store wins, then $DCSAUDIT_STORE, then the default."""
    value = args.store or os.environ.get(STORE_ENV)
    if value is not None:
        return None if value.strip().lower() == "none" else value
    return default_url(out, per_run) if default_on else None


def default_url(out: Path, per_run: bool) -> str:
    """The default store: a SQLite file beside the output directories (with --out-dir-per-run, inside the
    --out directory that holds the dated run directories). When that parent cannot be written (``--out
    /out`` in a container whose / is read-only), inside --out. (Here, not in store.py: a scan decides where
    its store is without importing SQLAlchemy.)"""
    base = out if per_run else out.resolve().parent
    if not per_run and not os.access(base, os.W_OK):
        base = out.resolve()
    return f"sqlite:///{base / DEFAULT_STORE_NAME}"


def load_run_suppressions(args: argparse.Namespace) -> list[Suppression] | None:
    """Read --suppressions before any packet: an unknown check id is a config error (exit 2)."""
    if args.suppressions is None:
        return None
    from dcsaudit.suppressions import load_suppressions

    return load_suppressions(args.suppressions)


def adjust(report: Report, policy: Policy, args: argparse.Namespace,
           suppressions: list[Suppression] | None) -> tuple[Report, Policy]:
    """--fail-on, then suppressions (a suppressed finding never gates, whatever --fail-on says)."""
    if args.fail_on:
        from dcsaudit.suppressions import apply_fail_on

        report, policy = apply_fail_on(report, policy, args.fail_on)
    if suppressions is not None:
        from dcsaudit.suppressions import apply_suppressions

        report = apply_suppressions(report, policy, suppressions)
    return report, policy


@dataclass(frozen=True)
class HistoryTarget:
    """Where ``finish`` stores the run, and the drift notifications to send after storing it."""

    url: str
    notify: NotifyOptions | None = None
    explicit: bool = True  # --store or $DCSAUDIT_STORE; False: the default file, which may not be writable
    worker: StoreWorker | None = None  # a child started with the run that imported the store ahead (worker.py)

    def store(self, report: Report, out: Path, quiet: bool) -> bool:
        """Store the finished run (``store_run``), in the worker when it is there to take it."""
        stored = self.worker.store(report, self.url, out, quiet, self.explicit) if self.worker else None
        return store_run(report, self.url, out, quiet, self.notify, self.explicit) if stored is None else stored

    def close(self) -> None:
        """End the worker if the run ends without storing (an error, an interruption)."""
        if self.worker is not None:
            self.worker.close()


def target(args: argparse.Namespace, out: Path, per_run: bool, default_on: bool,
           notify: NotifyOptions | None = None) -> HistoryTarget | None:
    url = run_store_url(args, out, per_run, default_on)
    explicit = bool(args.store or os.environ.get(STORE_ENV))
    return None if url is None else HistoryTarget(url, notify, explicit)


def notifies(notify: NotifyOptions | None) -> bool:
    return notify is not None and (notify.webhook is not None or bool(notify.audit_repository))


def store_run(run: Report | dict[str, Any], url: str, out: Path, quiet: bool, notify: NotifyOptions | None = None,
              explicit: bool = True) -> bool:
    """Store the finished run (the report, or its ``fingerprints.run_rows``), then send drift notifications
    (which need the report); False (said on stderr) when the store asked for cannot take the run. The default
    store that cannot be written (say ``--out /out`` in a container whose / is read-only) is a warning only:
    nobody asked for it. A failed notification never counts."""
    from dcsaudit.history.store import StoreError, describe, open_store

    outcomes: list[str] = []
    try:
        with open_store(url) as store:
            run_id = store.save_rows(run) if isinstance(run, dict) else store.save(run, out)
            if notify is not None and notifies(notify) and not isinstance(run, dict):
                outcomes = _notify_drift(store, run_id, run, notify)
    except StoreError as exc:
        if not explicit:
            print(f"dcsaudit: warning: run not kept in the default history store ({exc}); give --store URL "
                  "(or --store none)", file=sys.stderr)
            return True
        print(f"dcsaudit: {exc}", file=sys.stderr)
        return False
    if not quiet:
        print(f"  history: run {run_id} in {describe(url)}", file=sys.stderr)
    for line in outcomes:
        if not quiet or "not delivered" in line:
            print(f"  notify: {line}", file=sys.stderr)
    return True


def _notify_drift(store: Store, run_id: int, report: Report, notify: NotifyOptions) -> list[str]:
    from dcsaudit.history.diff import diff_runs
    from dcsaudit.history.notify import notify as send

    earlier = [r.id for r in store.runs(report.deployment) if r.id < run_id]
    if not earlier:
        return []
    return send(notify, diff_runs(store.snapshot(earlier[-1]), store.snapshot(run_id)), report)


def _open_existing(value: str | None) -> object:
    from sqlalchemy.engine import make_url

    from dcsaudit.history.store import StoreError, open_store, resolve_url

    url = resolve_url(value or os.environ.get(STORE_ENV) or f"sqlite:///{DEFAULT_STORE_NAME}")
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError("--store: not a database URL (sqlite:///PATH or postgresql+psycopg://…)") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).is_file():
        raise ConfigError(f"--store: no history store at {parsed.database} (give --store)")
    try:
        return open_store(url)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None


def cmd_history(args: argparse.Namespace) -> int:
    from dcsaudit.history.store import Store

    store = _open_existing(args.store)
    assert isinstance(store, Store)
    with store:
        runs = store.runs(args.deployment, limit=max(args.limit, 1))
    if args.format == "json":
        print(json.dumps([r.as_json() for r in runs], indent=2))
        return 0
    if not runs:
        print("no runs stored" + (f" for {args.deployment!r}" if args.deployment else ""))
        return 0
    print(f"{'run':>5}  {'finished (UTC)':<19}  {'exit':>4}  {'pass':>4} {'fail':>4} {'err':>4} {'n/a':>4}  "
          f"{'gating':>6} {'suppr':>5}  deployment")
    for r in runs:
        partial = "" if r.complete else " (partial)"
        exit_text = "-" if r.exit_status is None else str(r.exit_status)
        print(f"{r.id:>5}  {r.finished_at.strftime('%Y-%m-%d %H:%M:%S'):<19}  {exit_text:>4}  {r.passed:>4} "
              f"{r.failed:>4} {r.errors:>4} {r.not_applicable:>4}  {r.gating:>6} {r.suppressed:>5}  "
              f"{r.deployment}{partial}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from dcsaudit.history.diff import diff_runs, render_text
    from dcsaudit.history.store import Store, StoreError

    if len(args.runs) > 2:
        raise ConfigError("diff: give at most two run ids (RUN_A RUN_B)")
    store = _open_existing(args.store)
    assert isinstance(store, Store)
    with store:
        try:
            ids = _pick_runs(store, args.runs, args.deployment)
            a, b = store.snapshot(ids[0]), store.snapshot(ids[1])
        except StoreError as exc:
            raise ConfigError(f"diff: {exc}") from None
    if a.run.deployment != b.run.deployment:
        raise ConfigError(f"diff: run {a.run.id} ({a.run.deployment!r}) and run {b.run.id} ({b.run.deployment!r}) "
                          "are of different deployments")
    d = diff_runs(a, b, expiry_days=args.expiry_days)
    if args.format == "json":
        print(json.dumps(d.as_json(), indent=2, default=str))
    else:
        print(render_text(d), end="")
    return 1 if d.regression else 0


def _pick_runs(store: object, runs: list[int], deployment: str | None) -> tuple[int, int]:
    from dcsaudit.history.store import Store

    assert isinstance(store, Store)
    if len(runs) == 2:
        return runs[0], runs[1]
    if deployment is None:
        if len(runs) == 1:
            deployment = store.snapshot(runs[0]).run.deployment
        else:
            names = store.deployments()
            if len(names) != 1:
                raise ConfigError("diff: the store holds " + (f"{len(names)} deployments ({', '.join(names[:5])}); "
                                  "give --deployment" if names else "no runs"))
            deployment = names[0]
    all_runs = [r.id for r in store.runs(deployment)]
    if len(runs) == 1:
        earlier = [r for r in all_runs if r < runs[0]]
        if not earlier:
            raise ConfigError(f"diff: no run of {deployment!r} before run {runs[0]}")
        return earlier[-1], runs[0]
    if len(all_runs) < 2:
        raise ConfigError(f"diff: {deployment!r} has {len(all_runs)} stored run(s); a diff needs two")
    return all_runs[-2], all_runs[-1]
