"""`dcsaudit --version` and `--help` stay fast: the CLI imports heavy modules only where a command needs
them (issue 16: 0.35 s before, target 0.15 s). Checked by what is imported, not by a wall-clock time that
a loaded machine would make flaky."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pydantic", "sslyze", "nassl", "jinja2", "lxml", "pynetdicom", "pydicom", "asyncio", "yaml", "cryptography",
         "dcsaudit.runner", "dcsaudit.annex", "dcsaudit.config", "dcsaudit.models")


def test_cli_parser_imports_no_heavy_module() -> None:
    # Given a fresh interpreter
    code = ("import json, sys; from dcsaudit.cli import build_parser; build_parser(); "
            "print(json.dumps(sorted(sys.modules)))")
    # When the CLI module is imported and its parser built (what --version and --help need)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = json.loads(out.stdout)
    # Then none of the heavy modules was imported
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []


def test_version_prints_without_running_anything() -> None:
    out = subprocess.run([sys.executable, "-m", "dcsaudit.cli", "--version"], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.startswith("dcsaudit ")


def test_the_end_of_a_run_imports_no_dicom_library() -> None:
    # Given a fresh interpreter, When the runner, checks and annex builder are imported (what a scan of
    # TLS or HTTPS ports only loads), Then neither pydicom nor pynetdicom is (0.2 s and more: they load
    # where a DICOM AE is audited or a UID is named)
    code = ("import json, sys; import dcsaudit.runner, dcsaudit.annex.builder, dcsaudit.checks; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.split(".")[0] in ("pydicom", "pynetdicom")] == []
