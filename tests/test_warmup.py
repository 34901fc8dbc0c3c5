"""dcsaudit.warmup: background loading never changes a result and never raises (issue 16)."""

from __future__ import annotations

import sys

from dcsaudit import output, warmup


def test_every_step_names_something_that_exists_and_loads() -> None:
    thread = warmup.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    for step in warmup.STEPS:
        if isinstance(step, str):
            assert step in sys.modules, step
    # the templates are compiled once and reused by the writers
    assert output._env(True).get_template("annex.html.j2") is output._env(True).get_template("annex.html.j2")


def test_a_failing_step_is_logged_and_the_next_still_runs() -> None:
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("broken")

    thread = warmup.start(("dcsaudit.no_such_module", boom, lambda: ran.append("after")))
    thread.join(timeout=10)
    assert ran == ["after"]
