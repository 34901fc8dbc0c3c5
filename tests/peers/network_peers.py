"""Real network-service peers on 127.0.0.1 for the issue-15 probes: each a context manager yielding its port.

- ``chrony``: chronyd serving NTP on a free UDP port (``local stratum``: it answers without upstreams),
  optionally with NTS-KE (RFC 8915) on a free TCP port with the test PKI's server certificate.
- ``ntpsec``: ntpsec's ntpd on 127.0.0.1:123, answering mode-6 control queries (chrony answers none);
- ``nsd_signed``: NSD serving a DNSSEC-signed zone (the DNSSEC positive; dnsmasq signs nothing);
- ``orthanc_dicomweb``: Orthanc with its DICOMweb plugin (Debian orthanc-dicomweb) at /dicom-web/, with
  authentication off, or on with one registered user (plain HTTP: Orthanc 1.10.1's HTTPS server
  crashes on the first request in this environment).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.common import LOOPBACK, TestPKI, free_port, require_program, running, wait_for_port


@dataclass(frozen=True)
class ChronyPeer:
    ntp_port: int
    nts_ke_port: int | None


def _wait_ntp(port: int, timeout: float = 10.0) -> None:
    """chronyd binds its UDP socket after start-up; wait until a mode-3 query gets an answer."""
    deadline = time.monotonic() + timeout
    query = bytes([0x23]) + bytes(47)
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(query, (LOOPBACK, port))
                if len(s.recv(512)) >= 48:
                    return
            except OSError:
                time.sleep(0.05)
    raise TimeoutError(f"chronyd did not answer on {LOOPBACK}:{port}/udp")


@contextmanager
def chrony(*, stratum: int = 8, pki: TestPKI | None = None) -> Iterator[ChronyPeer]:
    exe = require_program("chronyd")
    port = free_port(kind=socket.SOCK_DGRAM)
    nts = free_port() if pki is not None else None
    d = Path(tempfile.mkdtemp(prefix="chrony-"))
    lines = [f"port {port}", f"bindaddress {LOOPBACK}", f"allow {LOOPBACK}", f"local stratum {stratum}",
             "cmdport 0", f"pidfile {d / 'chronyd.pid'}", f"driftfile {d / 'drift'}", f"ntsdumpdir {d}"]
    if pki is not None:
        lines += [f"ntsservercert {pki.server_chain}", f"ntsserverkey {pki.server_key}", f"ntsport {nts}",
                  "ntsprocesses 0"]
    conf = d / "chrony.conf"
    conf.write_text("\n".join(lines) + "\n")
    # -d: foreground, -x: never touch the system clock; -u root avoids the privilege drop (files in /tmp).
    with running([exe, "-d", "-x", "-u", "root", "-f", str(conf)], wait=False):
        _wait_ntp(port)
        if nts is not None:
            wait_for_port(nts)
        yield ChronyPeer(port, nts)


ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@contextmanager
def orthanc_dicomweb(*, users: dict[str, str] | None = None) -> Iterator[int]:
    """Yields the HTTP port. ``users``: RegisteredUsers with AuthenticationEnabled (Orthanc Book)."""
    exe = require_program("Orthanc")
    if not ORTHANC_PLUGIN.exists():
        require_program("orthanc-dicomweb-plugin-missing")  # skip (or fail on CI) with a clear name
    http, dicom = free_port(), free_port()
    d = Path(tempfile.mkdtemp(prefix="orthanc-web-"))
    cfg: dict[str, object] = {
        "Name": "dcsaudit-web", "DicomAet": "ORTHANC", "DicomPort": dicom, "HttpPort": http,
        "StorageDirectory": str(d / "db"), "IndexDirectory": str(d / "db"), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(users), "RegisteredUsers": users or {},
        "Plugins": [str(ORTHANC_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (d / "orthanc.json").write_text(json.dumps(cfg), encoding="utf-8")
    with running([exe, str(d / "orthanc.json")], port=http, cwd=d):
        yield http


@dataclass(frozen=True)
class SlapdPeer:
    ldap_port: int
    ldaps_port: int | None
    admin_dn: str


@contextmanager
def slapd(*, anonymous: bool = True, plaintext_simple_bind: bool = True, pki: TestPKI | None = None,
          admin_password: str = "test-only") -> Iterator[SlapdPeer]:
    """OpenLDAP slapd on loopback with an mdb database ``dc=example,dc=org`` and its rootdn as the test account.

    ``anonymous`` False: ``disallow bind_anon``; ``plaintext_simple_bind`` False: ``security simple_bind=128``
    (confidentialityRequired without TLS); ``pki``: StartTLS on the LDAP port and an LDAPS port.
    """
    exe = require_program("slapd")
    d = Path(tempfile.mkdtemp(prefix="slapd-"))
    (d / "db").mkdir()
    ldap_port = free_port()
    ldaps_port = free_port() if pki is not None else None
    lines = ["include /etc/ldap/schema/core.schema", "modulepath /usr/lib/ldap", "moduleload back_mdb",
             f"pidfile {d / 'slapd.pid'}"]
    if pki is not None:
        lines += [f"TLSCertificateFile {pki.server_cert}", f"TLSCertificateKeyFile {pki.server_key}",
                  f"TLSCACertificateFile {pki.ca_file}"]
    if not anonymous:
        lines.append("disallow bind_anon")
    if not plaintext_simple_bind:
        lines.append("security simple_bind=128")
    lines += ["database mdb", 'suffix "dc=example,dc=org"', 'rootdn "cn=admin,dc=example,dc=org"',
              f"rootpw {admin_password}", f"directory {d / 'db'}"]
    (d / "slapd.conf").write_text("\n".join(lines) + "\n")
    urls = f"ldap://{LOOPBACK}:{ldap_port}/" + (f" ldaps://{LOOPBACK}:{ldaps_port}/" if ldaps_port else "")
    with running([exe, "-d", "0", "-h", urls, "-f", str(d / "slapd.conf")], port=ldap_port):
        if ldaps_port:
            wait_for_port(ldaps_port)
        yield SlapdPeer(ldap_port, ldaps_port, "cn=admin,dc=example,dc=org")


@dataclass(frozen=True)
class DnsAdvert:
    instance: str  # e.g. "PACS" -> PACS._dicom._tcp.<domain>
    service_type: str  # "_dicom._tcp" or "_dicom-tls._tcp"
    host: str  # a name in the domain, resolving to 127.0.0.1
    port: int
    txt: tuple[str, ...] = ()


DOMAIN = "dcsaudit.test"


@contextmanager
def dnsmasq(*, upstream: int | None = None, adverts: tuple[DnsAdvert, ...] = (), allow_axfr: bool = False,
            answer_all: str | None = None) -> Iterator[int]:
    """dnsmasq on a free loopback port (UDP and TCP), never reading /etc/resolv.conf or /etc/hosts.

    ``upstream``: forward other names to that loopback port (recursion; otherwise REFUSED); ``adverts``:
    DNS-SD PTR/SRV/TXT records in ``dcsaudit.test``; ``allow_axfr``: authoritative for the zone with
    127.0.0.1 allowed to transfer it; ``answer_all``: answer every name under that domain with 127.0.0.9.
    """
    exe = require_program("dnsmasq")
    port = free_port()
    d = Path(tempfile.mkdtemp(prefix="dnsmasq-"))
    cmd = [exe, "--keep-in-foreground", "--conf-file=/dev/null", f"--port={port}", f"--listen-address={LOOPBACK}",
           "--bind-interfaces", "--no-resolv", "--no-hosts", f"--pid-file={d / 'pid'}", f"--log-facility={d / 'log'}",
           f"--local=/{DOMAIN}/", f"--host-record=pacs.{DOMAIN},{LOOPBACK}"]
    if upstream is not None:
        cmd.append(f"--server={LOOPBACK}#{upstream}")
    if answer_all is not None:
        cmd.append(f"--address=/{answer_all}/127.0.0.9")
    for a in adverts:
        name = f"{a.instance}.{a.service_type}.{DOMAIN}"
        cmd += [f"--ptr-record={a.service_type}.{DOMAIN},{name}", f"--srv-host={name},{a.host},{a.port}"]
        if a.txt:
            cmd.append(f"--txt-record={name},{','.join(a.txt)}")
    if allow_axfr:
        cmd += [f"--auth-server=ns.{DOMAIN}", f"--auth-zone={DOMAIN}", f"--auth-peer={LOOPBACK}"]
    with running(cmd, port=port):
        yield port


def signed_zone(d: Path, origin: str = DOMAIN) -> Path:
    """A small zone for ``origin`` signed in ``d`` by BIND's dnssec-keygen/dnssec-signzone (Debian bind9-utils;
    one ECDSA P-256 key, NSEC; RFC 4034, RFC 6605). dnspython's signer needs a newer cryptography than sslyze allows."""
    keygen, signzone = require_program("dnssec-keygen"), require_program("dnssec-signzone")
    zone = d / "zone.db"
    zone.write_text(f"$ORIGIN {origin}.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n@ IN NS ns\n"
                    f"ns IN A {LOOPBACK}\npacs IN A {LOOPBACK}\n")
    subprocess.run([keygen, "-q", "-K", str(d), "-a", "ECDSAP256SHA256", "-f", "KSK", origin], check=True,
                   capture_output=True, timeout=30)
    subprocess.run([signzone, "-q", "-z", "-S", "-K", str(d), "-o", origin, "-f", str(d / "zone.signed"), str(zone)],
                   check=True, capture_output=True, timeout=30, cwd=d)
    return d / "zone.signed"


@contextmanager
def nsd_signed(origin: str = DOMAIN) -> Iterator[int]:
    """NSD (Debian ``nsd``), authoritative on a free loopback port (UDP and TCP) for a DNSSEC-signed zone:
    a SOA query with the DO bit gets the RRSIGs (RFC 4035 §3.1.1). No recursion, no remote control."""
    exe = require_program("nsd")
    port = free_port()
    d = Path(tempfile.mkdtemp(prefix="nsd-"))
    signed = signed_zone(d, origin)
    (d / "nsd.conf").write_text(
        f'server:\n  ip-address: {LOOPBACK}\n  port: {port}\n  do-ip6: no\n  username: ""\n  chroot: ""\n'
        f'  zonesdir: "{d}"\n  pidfile: "{d}/nsd.pid"\n  database: ""\n  xfrdfile: "{d}/xfrd.state"\n'
        f'  zonelistfile: "{d}/zone.list"\n  xfrdir: "{d}"\n  logfile: "{d}/nsd.log"\n  server-count: 1\n'
        f"  hide-version: yes\nremote-control:\n  control-enable: no\n"
        f'zone:\n  name: {origin}\n  zonefile: "{signed}"\n')
    try:
        with running([exe, "-d", "-c", str(d / "nsd.conf")], port=port):
            yield port
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


NTPSEC_NTPD = Path(os.environ.get("DCSAUDIT_NTPSEC_NTPD", "/opt/dcsaudit-peers/ntpsec/usr/sbin/ntpd"))
NTP_PORT = 123  # ntpd has no port option


@contextmanager
def ntpsec() -> Iterator[int]:
    """ntpsec's ntpd (unpacked by scripts/setup.sh: the package conflicts with chrony) answering NTP and mode-6
    control queries (RFC 9327 READVAR) on 127.0.0.1:123 only. No upstream server and ``disable ntp`` /
    ``disable kernel``: it never touches the clock; ``restrict default ignore`` answers loopback alone (ntpd
    still holds wildcard sockets, which it only drops on)."""
    if not NTPSEC_NTPD.exists():
        require_program("ntpsec-ntpd-unpacked-by-setup")  # skip (or fail on CI) with a clear name
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((LOOPBACK, NTP_PORT))
        except OSError as exc:
            pytest.skip(f"127.0.0.1:{NTP_PORT} is taken or not bindable ({exc.strerror}); ntpd has no port option")
    d = Path(tempfile.mkdtemp(prefix="ntpsec-"))
    conf = d / "ntp.conf"
    conf.write_text("restrict default ignore\nrestrict 127.0.0.1\nrestrict ::1\ndisable kernel\ndisable ntp\n"
                    f"statsdir {d}/\n")
    try:
        with running([str(NTPSEC_NTPD), "-n", "-c", str(conf), "-I", LOOPBACK, "-p", str(d / "pid"), "-l",
                      str(d / "log")], wait=False):
            _wait_ntp(NTP_PORT)
            yield NTP_PORT
    finally:
        import shutil

        shutil.rmtree(d, ignore_errors=True)
