#!/usr/bin/env bash
# Installs the dcsaudit runtime (what a scan needs, nothing the tests need) under ROOT, default /.
# The Dockerfile runs it in its build stage (ROOT=/) and copies ROOT/opt/dcsaudit into the runtime
# stage; tests/test_runtime_image.py runs the same script into a temporary ROOT and scans from there
# as the same unprivileged user (no container engine runs on the development machines).
#
#   scripts/install-runtime.sh [ROOT]        the venv: ROOT/opt/dcsaudit/venv (dcsaudit, no dev extras)
#   scripts/install-runtime.sh --debs        the Debian packages of the runtime stage (as root)
#   scripts/install-runtime.sh --build-debs  those the build stage needs to make the venv (as root)
#   scripts/install-runtime.sh --user        the numeric user and group 10001 (as root)
#
#   DCSAUDIT_PYTHON   interpreter for the venv (default /usr/bin/python3: Debian's, as in the image)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Runtime Debian packages: Python, nmap (port inventory), openssl (certificates, TLS), CA bundle, the
# DejaVu fonts annex.pdf is set in. No DCMTK, Orthanc, rsyslog, testssl.sh: those are test peers
# (scripts/setup.sh installs them).
RUNTIME_DEBS=(python3 ca-certificates nmap openssl fonts-dejavu-core)
BUILD_DEBS=(python3 python3-venv python3-pip ca-certificates)
UID_GID=10001

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    rm -rf /var/lib/apt/lists/*
}

case "${1:-}" in
--debs) apt_install "${RUNTIME_DEBS[@]}"; exit 0 ;;
--build-debs) apt_install "${BUILD_DEBS[@]}"; exit 0 ;;
--user)
    getent group "$UID_GID" >/dev/null || groupadd --gid "$UID_GID" dcsaudit
    getent passwd "$UID_GID" >/dev/null || useradd --uid "$UID_GID" --gid "$UID_GID" --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin dcsaudit
    exit 0 ;;
esac

root="${1:-/}"
venv="$root/opt/dcsaudit/venv"
python="${DCSAUDIT_PYTHON:-/usr/bin/python3}"
"$python" -m venv "$venv"
# Built from a clean copy of the package sources only (never tests/, benchmarks/ or a dev venv).
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/dcsaudit" "$repo/checks" "$repo/templates" "$repo/configs" "$src/"
rm -rf "$src/dcsaudit/checks"  # the source checkout's symlink to ../checks (package-dir maps it)
find "$src" -name __pycache__ -prune -exec rm -rf {} +
"$venv/bin/pip" install -q --disable-pip-version-check --no-compile "$src"
# Bytecode compiled now: a read-only root file system (Kubernetes) needs no writes at import time.
"$venv/bin/python" -m compileall -q "$venv/lib" >/dev/null
"$venv/bin/dcsaudit" --version >/dev/null
