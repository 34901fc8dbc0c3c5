"""The runtime container image, tested by what can run without a container engine (issue 13).

The test builds the runtime root file system the Dockerfile describes into a directory, with the same
install script (scripts/install-runtime.sh) the Dockerfile's build stage runs, and runs the README's
nightly example from it as the image's numeric user 10001:10001 with the image's environment: two
scans into ``--out DIR --out-dir-per-run`` (dated run directories, files 0644 under umask 022, the
history store beside them), then ``dcsaudit history`` lists both runs.

The first build of the root takes a minute or two (pip installs the runtime dependencies); it is kept in
/tmp keyed by a hash of everything the install reads, so later runs on the same sources reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.dicom_peers import pynetdicom_scp

REPO = Path(__file__).resolve().parent.parent
UID = GID = 10001
INPUTS = ("pyproject.toml", "scripts/install-runtime.sh", "dcsaudit", "checks", "templates", "configs")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="running as user 10001 needs root to switch to it")


def _inputs_hash() -> str:
    h = hashlib.sha256()
    for name in INPUTS:
        p = REPO / name
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
        for f in files:
            h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def runtime_root() -> Path:
    root = Path(tempfile.gettempdir()) / f"dcsaudit-runtime-root-{_inputs_hash()}"
    stamp = root / ".complete"
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(mode=0o755)
        proc = subprocess.run(["bash", str(REPO / "scripts/install-runtime.sh"), str(root)], capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        stamp.write_text("ok\n")
    os.chmod(root, 0o755)
    return root


def test_dockerfile_and_script_agree_on_the_runtime(runtime_root: Path) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    script = (REPO / "scripts/install-runtime.sh").read_text()
    # The runtime stage runs as the numeric user the script creates, and installs through the script
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    assert "UID_GID=10001" in script
    assert dockerfile.count("install-runtime.sh /\n") == 1 and "--debs" in dockerfile
    assert re.search(r"^FROM .* AS build$", dockerfile, re.M) and re.search(r"^FROM .* AS runtime$", dockerfile, re.M)
    # No test peer among the runtime Debian packages
    debs = re.search(r"RUNTIME_DEBS=\(([^)]*)\)", script)
    assert debs is not None
    assert set(debs.group(1).split()) == {"python3", "ca-certificates", "nmap", "openssl", "fonts-dejavu-core"}
    # The .dockerignore keeps tests and benchmarks out of the build context
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore and not any(line.startswith(("!tests", "!benchmarks")) for line in ignore)
    # The installed tree is the package only: not editable, no tests, no peers
    site = next((runtime_root / "opt/dcsaudit/venv/lib").glob("python3*/site-packages"))
    assert (site / "dcsaudit" / "history" / "migrations" / "versions" / "0001_initial.py").is_file()
    assert not list(site.glob("__editable__*"))
    [record] = site.glob("dcsaudit-*.dist-info/RECORD")
    installed = [line.split(",")[0] for line in record.read_text().splitlines()]
    assert all(p.startswith(("dcsaudit/", "dcsaudit-", "../../../bin/")) for p in installed), installed[:5]
    assert not (site / "tests" / "peers").exists()


@pytest.fixture()
def scp_port() -> Iterator[int]:
    with pynetdicom_scp("NIGHTLY", acse_timeout=10, network_timeout=10) as port:
        yield port


def _as_image_user(root: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{root}/opt/dcsaudit/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
           "HOME": "/tmp", "LANG": "C.UTF-8"}
    return subprocess.run(["dcsaudit", *args], env=env, cwd=cwd, user=UID, group=GID, extra_groups=[], umask=0o022,
                          capture_output=True, text=True, timeout=180)


def test_nightly_example_runs_as_the_unprivileged_user(runtime_root: Path, scp_port: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="dcsaudit-nightly-"))
    try:
        os.chmod(base, 0o755)
        site, out = base / "site", base / "out"
        site.mkdir()
        # `mkdir -p out` by the user the container runs as (docker run --user "$(id -u):$(id -g)")
        out.mkdir()
        os.chown(out, UID, GID)
        (site / "deployment.yaml").write_text(textwrap.dedent(f"""\
            deployment: nightly site
            hosts:
              - address: 127.0.0.1
                tcp_ports: [{scp_port}]
            scan:
              use_nmap: true
              udp: false
              tls_audit: false
              timeouts: {{connect: 1, read: 2, tls_handshake: 2, dicom: 3, nmap: 30}}
            """))
        # When the README's nightly command runs twice
        for _ in range(2):
            proc = _as_image_user(runtime_root, ["scan", str(site / "deployment.yaml"), "--out", str(out),
                                                 "--out-dir-per-run"], cwd=base)
            assert proc.returncode in (0, 1), proc.stderr
            assert "history: run" in proc.stderr
        # Then each run has its own dated directory, owned by the user, files 0644
        runs = sorted(p for p in out.iterdir() if p.is_dir())
        assert len(runs) == 2
        for run in runs:
            for f in ("report.json", "annex.md", "annex.html"):
                st = (run / f).stat()
                assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (UID, 0o644), f
        store = out / "dcsaudit-history.sqlite"
        assert store.stat().st_uid == UID
        # And the history beside them lists both runs
        proc = _as_image_user(runtime_root, ["history", "--store", f"sqlite:///{store}", "--format", "json"], cwd=base)
        assert proc.returncode == 0, proc.stderr
        assert [r["deployment"] for r in json.loads(proc.stdout)] == ["nightly site", "nightly site"]
        # And the plaintext SCP was found from inside the runtime (nmap and the probes work unprivileged)
        report = json.loads((runs[-1] / "report.json").read_text())
        assert any(e["port"] == scp_port and e["plaintext_dicom"] for e in report["endpoints"])
    finally:
        shutil.rmtree(base, ignore_errors=True)
