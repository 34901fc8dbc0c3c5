#!/usr/bin/env bash
# Installs everything dcsaudit and its tests need on a fresh Debian (12+) machine, as root:
# Debian packages (the real peers and tools the scans and tests use) and a Python virtualenv in .venv
# with the project installed. Idempotent: a second run only checks, so the README commands can call
# it every time. Used by scripts/demo.sh, scripts/test.sh, .ci/run and the Dockerfile.
#
#   DCSAUDIT_PYTHON   python interpreter for the venv (default: python3)
#   DCSAUDIT_VENV     venv directory (default: <repo>/.venv)
#   DCSAUDIT_EXTRAS   pip extras (default: dev; the Dockerfile sets it empty)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DCSAUDIT_VENV:-$repo/.venv}"
python="${DCSAUDIT_PYTHON:-python3}"
extras="${DCSAUDIT_EXTRAS-dev}"

# Debian packages: nmap drives the port inventory; DCMTK, Orthanc, rsyslog(+gnutls), openssl and
# testssl.sh are the real peers the tests start; iproute2 and nftables build test network namespaces.
debs=(python3 python3-venv python3-pip ca-certificates nmap dcmtk orthanc rsyslog rsyslog-gnutls
      openssl testssl.sh iproute2 nftables procps
      chrony orthanc-dicomweb dnsmasq slapd ldap-utils  # issue 15 peers: NTP, DICOMweb, DNS, LDAP
      # issue 14: annex.pdf's font (DejaVu: ✔ ✘ ∅ and most scripts); poppler reads the PDF in the tests
      fonts-dejavu-core poppler-utils
      openjdk-17-jre-headless  # a TLS server without TLS_FALLBACK_SCSV (Java's JSSE) for the SCSV test
      postgresql  # issue 13: the history store's fleet backend, started by the tests (initdb in a temp dir)
      nsd bind9-utils)  # issue 15: a DNSSEC-signed zone (dnssec-signzone) served by NSD for the DNSSEC positive

missing=()
for pkg in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing Debian packages (${missing[*]}); run this script as root" >&2
        exit 1
    fi
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Packages that ship daemons (orthanc, rsyslog) must not start them here: tests start their own.
    policy_rc=/usr/sbin/policy-rc.d
    created_policy=0
    if [[ ! -e $policy_rc ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod +x "$policy_rc" && created_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if ((created_policy)); then rm -f "$policy_rc"; fi
fi

# ntpsec's ntpd answers NTP mode-6 control queries (the NTP probe's positive case, issue 15), but the
# package conflicts with chrony (both provide time-daemon): unpack its .deb for the tests, never install it.
ntpsec_dir=/opt/dcsaudit-peers/ntpsec
if [[ ! -x $ntpsec_dir/usr/sbin/ntpd && $(id -u) -eq 0 ]]; then
    echo "setup: unpacking ntpsec into $ntpsec_dir (test peer only)" >&2
    deb_tmp="$(mktemp -d)"
    chmod 755 "$deb_tmp"  # apt's download sandbox user must be able to write there
    (cd "$deb_tmp" && { apt-get download -qq ntpsec 2>/dev/null || { apt-get update -qq && apt-get download -qq ntpsec; }; }) \
        && mkdir -p "$ntpsec_dir" && dpkg-deb -x "$deb_tmp"/ntpsec_*.deb "$ntpsec_dir"
    rm -rf "$deb_tmp"
fi

# Python environment, rebuilt only when pyproject.toml changes.
stamp="$venv/.dcsaudit-installed"
want="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1) extras=$extras"
if [[ ! -x $venv/bin/python || ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
    echo "setup: installing dcsaudit into $venv" >&2
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    spec="$repo"
    [[ -n $extras ]] && spec="$repo[$extras]"
    if [[ -n ${DCSAUDIT_EDITABLE-1} ]]; then
        "$venv/bin/python" -m pip install -q -e "$spec"
    else
        "$venv/bin/python" -m pip install -q "$spec"
    fi
    echo "$want" >"$stamp"
fi
# An editable install leaves the project's own modules uncompiled, and with PYTHONDONTWRITEBYTECODE set
# every run compiles them again (≈ 0.3 s of each scan, issue 16). Stale bytecode is ignored by Python.
"$venv/bin/python" -m compileall -q "$repo/dcsaudit" "$repo/checks" "$repo/configs" "$repo/templates" >/dev/null || true
"$venv/bin/dcsaudit" --version >/dev/null
