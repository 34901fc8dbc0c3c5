"""`dcsaudit --version` and `--help` stay fast: the CLI imports heavy modules only where a command needs
them (issue 16: 0.35 s before, target 0.15 s). Checked by what is imported, not by a wall-clock time that
a loaded machine would make flaky."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("pydantic", "sslyze", "nassl", "jinja2", "lxml", "pynetdicom", "pydicom", "asyncio", "yaml", "cryptography",
         "dcsaudit.runner", "dcsaudit.annex", "dcsaudit.config", "dcsaudit.models",
         # what carries the options out, apart from their declaration (export/options.py, history/options.py);
         # dataclasses imports inspect: ≈ 15 ms of a 0.1 s --version
         "dcsaudit.export.publish", "dcsaudit.history.commands", "dataclasses")


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


def test_scan_with_vulnerability_tests_imports_no_sslyze_and_starts_no_child(tmp_path: Path) -> None:
    # Given a TLS 1.2 server and a scan with the vulnerability tests on (the default) and ROBOT off
    from tests.peers.tls_peers import RsaPKI, openssl_server

    pki = RsaPKI(tmp_path)
    with openssl_server(pki, versions=("-no_tls1_3",)) as port:
        cfg = tmp_path / "deployment.yaml"
        cfg.write_text(json.dumps({
            "deployment": "startup", "hosts": [{"address": "127.0.0.1", "tcp_ports": [port], "udp_ports": []}],
            "scan": {"use_nmap": False, "dicom_audit": False, "tls": {"vulnerabilities": True},
                     "timeouts": {"connect": 1, "read": 1.5, "tls_handshake": 1.5, "endpoint": 30}}}))
        # When `dcsaudit scan` runs in a fresh interpreter that counts the sslyze children it would start
        code = ("import json, sys; import dcsaudit.probes.tls.vulns as v; spawned = []; real = v._spawn\n"
                "async def spy():\n    spawned.append(1)\n    return await real()\n"
                "v._spawn = spy\nfrom dcsaudit.cli import main\n"
                f"rc = main(['scan', {str(cfg)!r}, '--out', {str(tmp_path / 'out')!r}, '-q'])\n"
                "print(json.dumps({'rc': rc, 'spawned': len(spawned), 'modules': sorted(sys.modules)}))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # Then the tests ran, sslyze was never imported and no child was started
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    [ep] = [e for e in report["endpoints"] if e["port"] == port]
    assert ep["tls"]["vulnerabilities"]["heartbleed"] is False and len(ep["tls"]["vulnerabilities"]["evidence"]) == 3
    assert got["spawned"] == 0
    assert [m for m in got["modules"] if m.split(".")[0] == "sslyze"] == []


def test_scan_of_a_dicom_ae_imports_neither_pydicom_nor_pynetdicom(tmp_path: Path) -> None:
    # Given a pynetdicom SCP that rejects calls to other AE titles, so the audit's probes with random called
    # titles come back as A-ASSOCIATE-RJ PDUs to decode
    from tests.peers.dicom_peers import pynetdicom_scp

    with pynetdicom_scp("STARTUPSCP", require_called=True) as port:
        cfg = tmp_path / "deployment.yaml"
        cfg.write_text(json.dumps({
            "deployment": "startup", "hosts": [{"address": "127.0.0.1", "tcp_ports": [port], "udp_ports": []}],
            "application_entities": [{"ae_title": "STARTUPSCP", "host": "127.0.0.1", "port": port}],
            "scan": {"use_nmap": False, "timeouts": {"connect": 1, "read": 1.5, "dicom": 3, "endpoint": 30}}}))
        # When `dcsaudit scan` runs in a fresh interpreter
        code = ("import json, sys\nfrom dcsaudit.cli import main\n"
                f"rc = main(['scan', {str(cfg)!r}, '--out', {str(tmp_path / 'out')!r}, '-q'])\n"
                "print(json.dumps({'rc': rc, 'modules': sorted(sys.modules)}))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # Then the AE was audited, rejects were decoded and SOP classes named, and neither library was imported
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    [ae] = report["application_entities"]
    assert ae["called_ae_reject"]["result"] == 1 and ae["called_ae_reject"]["source"] == 1, ae
    assert any(c["name"] == "Verification" for c in ae["presentation_contexts"]), ae["presentation_contexts"]
    assert [m for m in got["modules"] if m.split(".")[0] in ("pydicom", "pynetdicom")] == []


def test_the_end_of_a_scan_never_formats_the_reports_repr(tmp_path: Path) -> None:
    # Given a scan (of a closed port: the pipeline runs and writes a report) in a fresh interpreter where the
    # report's repr fails loudly (CPython's signal.getsignal() formats asyncio's SIGINT handler, holding the
    # main task and its result, when asyncio.run ends: a whole report's repr, four times)
    from tests.peers.common import free_port

    cfg = tmp_path / "deployment.yaml"
    cfg.write_text(json.dumps({
        "deployment": "startup", "hosts": [{"address": "127.0.0.1", "tcp_ports": [free_port()], "udp_ports": []}],
        "scan": {"use_nmap": False, "timeouts": {"connect": 1, "read": 1, "endpoint": 10}}}))
    code = ("import sys\nfrom dcsaudit.models.report import Report\n"
            "def no_repr(self): raise SystemExit('repr of the report')\n"
            "Report.__repr__ = no_repr\nfrom dcsaudit.cli import main\n"
            f"sys.exit(main(['scan', {str(cfg)!r}, '--out', {str(tmp_path / 'out')!r}, '-q']))")
    # When it runs
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    # Then it ends as a scan does (0 or 1), with its report written, and never reached the repr
    assert out.returncode in (0, 1), out.stderr
    assert "repr of the report" not in out.stderr + out.stdout
    assert (tmp_path / "out" / "report.json").exists()
