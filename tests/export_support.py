"""Shared by the issue-14 tests: one real demo run per test process, written in every document format.

The demo (~40 s) is the only report with rows in most annex tables; running it once and reusing its
outputs keeps the document tests to seconds each after the first.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from dcsaudit.cli import main

ALL_FORMATS = "json,md,html,docx,pdf"


@functools.cache
def demo_outputs() -> Path:
    """The output directory of ``dcsaudit demo --format json,md,html,docx,pdf`` (exit 1: the demo's
    plaintext port fails the default policy)."""
    out = Path(tempfile.mkdtemp(prefix="dcsaudit-h6-demo-"))
    status = main(["demo", "--out", str(out), "-q", "--force", "--format", ALL_FORMATS, "--store", "none"])
    assert status == 1, status
    return out
