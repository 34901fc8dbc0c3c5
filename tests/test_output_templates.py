"""Compiled templates kept between runs (issue 16): the same annexes as compiling afresh, a cache in jinja2's
per-user directory, and no cache at all where that directory is not safely ours."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dcsaudit import output
from dcsaudit.models.report import Report, RunInfo


def _report() -> Report:
    now = datetime.now(UTC)
    return Report(deployment="templates-test <b>&amp;</b>", started_at=now, finished_at=now,
                  run=RunInfo(tool_version="0.1.0", command="scan", policy="default"))


@pytest.fixture
def tmpdir_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """jinja2's default cache directory lives in tempfile's directory: point that at tmp_path, with fresh
    environments before and after."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    output._env.cache_clear()
    yield tmp_path
    output._env.cache_clear()


def _render_all(report: Report) -> tuple[str, str]:
    data = report.model_dump(mode="json")
    return output.render(data, "annex.md.j2", False), output.render(data, "annex.html.j2", True)


def test_cached_templates_render_what_fresh_ones_do(tmpdir_of: Path) -> None:
    report = _report()
    # Given the annexes rendered with no cache at all
    for autoescape in (False, True):
        output._env(autoescape).bytecode_cache = None
    expected = _render_all(report)
    # When they are rendered through the cache: once filling it, once from it (new environments each time)
    output._env.cache_clear()
    first = _render_all(report)
    cache = tmpdir_of / f"_jinja2-cache-{os.getuid()}"
    files = sorted(p.name for p in cache.iterdir())
    output._env.cache_clear()
    second = _render_all(report)
    # Then all three are the same text, and the cache holds one entry per template, private to us
    assert first == expected and second == expected
    assert len(files) == 2 and all(f.startswith("dcsaudit-") for f in files)
    assert cache.stat().st_mode & 0o777 == 0o700


def test_no_cache_where_the_directory_is_not_safely_ours(tmpdir_of: Path) -> None:
    # Given jinja2's cache directory already there, writable by everyone (someone else could plant code)
    cache = tmpdir_of / f"_jinja2-cache-{os.getuid()}"
    cache.mkdir()
    cache.chmod(0o777)
    if os.getuid() == 0:  # jinja2 chmods a directory it owns back to 0700; as root make it someone else's
        os.chown(cache, 12345, 12345)
    # When the annexes are rendered
    md, html = _render_all(_report())
    # Then they are, without a cache: nothing was written there
    assert "templates-test" in md and "&lt;b&gt;" in html
    assert output._env(True).bytecode_cache is None
    assert list(cache.iterdir()) == []
