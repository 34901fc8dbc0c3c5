"""-v / --log-file on every command: what each stage did and how long, and never a secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dcsaudit import logs
from dcsaudit.cli import main
from dcsaudit.config import SecretRef


def test_log_file_gets_stage_timings_and_redacts_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a secret the config resolves, and a log file
    monkeypatch.setenv("DCS_LOG_SECRET", "s3cret-passcode-value")
    log_file = tmp_path / "run.log"
    logs.setup(1, log_file)
    secret = SecretRef(env="DCS_LOG_SECRET").resolve().get_secret_value()
    # When something logs it (by mistake) and a stage logs its timing
    logging.getLogger("dcsaudit.runner").info("stage %s: %.2f s", "inventory", 0.5)
    logging.getLogger("dcsaudit.probes.x").info("oops %s", secret)
    for h in logging.getLogger("dcsaudit").handlers:
        h.flush()
    text = log_file.read_text()
    # Then the timing is there and the secret is not
    assert "stage inventory: 0.50 s" in text
    assert "s3cret-passcode-value" not in text and logs.REDACTED in text


def test_every_command_takes_verbose_and_log_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # schema is the cheapest command; scan/demo/listen share the same options
    log_file = tmp_path / "schema.log"
    assert main(["schema", "-v", "--log-file", str(log_file)]) == 0
    assert "dcsaudit" in log_file.read_text() and "schema" in log_file.read_text()
    capsys.readouterr()
    # An unwritable log file is a usage error before anything runs
    assert main(["schema", "--log-file", str(tmp_path / "no" / "such" / "dir.log")]) == 2
    assert "--log-file" in capsys.readouterr().err
