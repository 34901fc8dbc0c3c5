"""What the rest of a run will need, loaded while the network stages wait on the wire (issue 16).

A scan of a few endpoints spends most of its wall time waiting for peers, while what comes after
the probes (the DICOM client, the checks, the annex builder, the report templates, the history
store's SQLAlchemy) costs about half a second of imports and template compiling that does not
depend on anything the probes find. :func:`start` does that work in one daemon thread. Nothing here
produces a result: whatever has not finished when the run needs it is waited for (an import blocks
on its module lock, the template cache is filled again), and a failure here is only logged — the
same step fails again, visibly, where the run does it for real.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def _templates() -> None:
    from dcsaudit import output

    output.preload_templates()


def _tls_rules() -> None:
    from dcsaudit.rules import tls_profiles

    tls_profiles.load_profiles()


# In the order the run needs them: the DICOM client (the first stage after identification), then the
# end of the run. Module names are imported; callables prepare caches.
STEPS: tuple[str | Callable[[], None], ...] = (
    "dcsaudit.probes.dicom_assoc",
    "dcsaudit.checks",
    "dcsaudit.annex.builder",
    _tls_rules,
    _templates,
    "dcsaudit.history.store",  # SQLAlchemy; Alembic only runs when the store is not at its head revision
)


def _run(steps: tuple[str | Callable[[], None], ...]) -> None:
    start = time.perf_counter()
    for step in steps:
        try:
            if isinstance(step, str):
                importlib.import_module(step)
            else:
                step()
        except Exception as exc:  # the run does the same step itself and reports it there
            log.debug("warm-up step %s failed: %s: %s", step, type(exc).__name__, exc)
    log.debug("warm-up done in %.2f s", time.perf_counter() - start)


def start(steps: tuple[str | Callable[[], None], ...] = STEPS) -> threading.Thread:
    """Start loading in the background; the caller never has to wait for it (a daemon thread)."""
    thread = threading.Thread(target=_run, args=(steps,), name="warmup", daemon=True)
    thread.start()
    return thread
