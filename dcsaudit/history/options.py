"""The command-line options of issue 13 (``--store``, ``--suppressions``, ``--fail-on``, ``--exit-zero``) and the
``history`` and ``diff`` commands' arguments, apart from what carries them out (``commands.py``): building
the parser imports only argparse, so ``dcsaudit --version`` and ``--help`` stay fast (issue 16)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

STORE_ENV = "DCSAUDIT_STORE"
STORE_HELP = ("history store: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB, or {file: PATH} / {env: NAME} "
              f"holding the URL (default: ${STORE_ENV}, else")


def add_run_options(sp: argparse.ArgumentParser, default_store: str) -> None:
    sp.add_argument("--store", metavar="URL", help=f"{STORE_HELP} {default_store}); 'none' stores nothing")
    sp.add_argument("--suppressions", type=Path, metavar="FILE",
                    help="accepted risks: check id, target pattern, reason, owner, expiry (see docs/design.md)")
    sp.add_argument("--fail-on", metavar="SEVERITY", choices=("info", "low", "medium", "high", "critical"),
                    help="a failed finding at or above this severity fails the run (overrides the policy's "
                    "fail_at_severity; its gate and ignore lists still apply)")
    sp.add_argument("--exit-zero", action="store_true",
                    help="exit 0 even when the policy fails (the report still says it failed); errors still exit 2-4")


def add_commands(sub: Any, logging_options: Callable[[argparse.ArgumentParser], None]) -> None:
    hist = sub.add_parser("history", help="list the runs in the history store")
    hist.add_argument("--store", metavar="URL", help=f"{STORE_HELP} ./dcsaudit-history.sqlite)")
    hist.add_argument("--deployment", help="only this deployment")
    hist.add_argument("--limit", type=int, default=50, help="the newest N runs (default 50)")
    hist.add_argument("--format", choices=("text", "json"), default="text")
    diff = sub.add_parser("diff", help="what changed between two runs (exit 1 when it is a regression)",
                          epilog="exit status: 0 no regression, 1 regression, 2 usage error or no such runs")
    diff.add_argument("runs", nargs="*", type=int, metavar="RUN", help="RUN_A RUN_B (default: the last two runs "
                      "of the deployment); one RUN: that run against the one before it")
    diff.add_argument("--store", metavar="URL", help=f"{STORE_HELP} ./dcsaudit-history.sqlite)")
    diff.add_argument("--deployment", help="the deployment (needed when the store holds several)")
    diff.add_argument("--expiry-days", type=int, default=30, help="list certificates expiring within N days (30)")
    diff.add_argument("--format", choices=("text", "json"), default="text")
    for sp in (hist, diff):
        logging_options(sp)
