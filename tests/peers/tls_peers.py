"""Real TLS peers on 127.0.0.1 for tests and benchmarks: each a context manager yielding its port.

- ``openssl_server``: ``openssl s_server`` with a chosen TLS 1.2 suite order, optional ``-serverpref``,
  TLS 1.3 suites, and optional/required client certificates.
- ``storescp_tls``: DCMTK ``storescp +tls`` with one of its PS3.15 profiles (+py +px +pz +pa +pn).
- ``orthanc_tls``: Orthanc with DicomTlsEnabled (remote certificate required or not).
- ``rsyslog_gtls``: rsyslogd with an imtcp gtls (RFC 5425) input.
- ``bad_server``: hostile peers in a thread: "garbage", "reset" (mid-handshake), "silent".
- ``jsse_server``: a Java (JSSE) TLS server with chosen versions: JSSE does not implement
  TLS_FALLBACK_SCSV (RFC 7507), so it is the real peer without downgrade protection.

Other helpers' tests (DICOM, syslog) may import these; they only depend on ``tests.peers.common``.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import trustme

from tests.peers.common import LOOPBACK, TestPKI, free_port, require_program, running, tcp_server

ClientAuth = Literal["none", "optional", "required"]


@contextmanager
def openssl_server(
    pki: TestPKI,
    *,
    ciphers: str | None = None,
    tls13_suites: str | None = None,
    serverpref: bool = False,
    client_auth: ClientAuth = "none",
    versions: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> Iterator[int]:
    """``versions`` e.g. ("-no_tls1_3",) or ("-tls1_2",) are passed through as s_server switches."""
    exe = require_program("openssl")
    port = free_port()
    cmd = [exe, "s_server", "-accept", f"{LOOPBACK}:{port}", "-cert", str(pki.server_cert),
           "-key", str(pki.server_key), "-cert_chain", str(pki.server_chain), "-quiet", "-www", "-naccept", "100000"]
    if ciphers:
        cmd += ["-cipher", ciphers]
    if tls13_suites:
        cmd += ["-ciphersuites", tls13_suites]
    if serverpref:
        cmd += ["-serverpref"]
    if client_auth != "none":
        cmd += ["-Verify" if client_auth == "required" else "-verify", "2", "-CAfile", str(pki.ca_file)]
    cmd += [*versions, *extra]
    with running(cmd, port=port):
        yield port


@contextmanager
def storescp_tls(pki: TestPKI, profile: str = "+px", *, peer_cert: Literal["require", "verify", "ignore"] = "ignore",
                 extra: tuple[str, ...] = ()) -> Iterator[int]:
    """DCMTK storescp with TLS. ``peer_cert``: -rc (require), -vc (verify if present), -ic (ignore)."""
    exe = require_program("storescp")
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="storescp-"))
    flag = {"require": "-rc", "verify": "-vc", "ignore": "-ic"}[peer_cert]
    cmd = [exe, "+tls", str(pki.server_key), str(pki.server_cert), profile, flag, "+cf", str(pki.ca_file),
           "-od", str(out), "-aet", "STORESCP", *extra, str(port)]
    with running(cmd, port=port, env={**os.environ, "TCP_NODELAY": "1"}):
        yield port


@contextmanager
def orthanc_tls(pki: TestPKI, *, remote_certificate_required: bool = False) -> Iterator[int]:
    """Orthanc 1.10 with DICOM TLS (options DicomTls* as documented in the Orthanc Book)."""
    exe = require_program("Orthanc")
    port, http = free_port(), free_port()
    d = Path(tempfile.mkdtemp(prefix="orthanc-"))
    cfg = {
        "Name": "DCSAUDIT-TEST", "DicomAet": "ORTHANC", "DicomPort": port, "HttpPort": http,
        "StorageDirectory": str(d / "db"), "IndexDirectory": str(d / "db"), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [], "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(pki.server_cert), "DicomTlsPrivateKey": str(pki.server_key),
        "DicomTlsTrustedCertificates": str(pki.ca_file),
        "DicomTlsRemoteCertificateRequired": remote_certificate_required,
    }
    (d / "orthanc.json").write_text(json.dumps(cfg), encoding="utf-8")
    with running([exe, str(d / "orthanc.json")], port=port, cwd=d):
        yield port


@contextmanager
def rsyslog_gtls(pki: TestPKI, *, auth_mode: str = "anon") -> Iterator[int]:
    """rsyslogd -n with an imtcp input using the gtls (GnuTLS) stream driver, RFC 5425 style."""
    exe = require_program("rsyslogd")
    port = free_port()
    d = Path(tempfile.mkdtemp(prefix="rsyslog-"))
    conf = d / "rsyslog.conf"
    conf.write_text(f"""
global(workDirectory="{d}" DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{pki.ca_file}" DefaultNetstreamDriverCertFile="{pki.server_cert}"
       DefaultNetstreamDriverKeyFile="{pki.server_key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="{auth_mode}"
       MaxSessions="5000")
input(type="imtcp" port="{port}" address="{LOOPBACK}")
*.* action(type="omfile" file="{d}/messages.log")
""", encoding="utf-8")
    with running([exe, "-n", "-f", str(conf), "-i", str(d / "rsyslogd.pid")], port=port):
        yield port


BadKind = Literal["garbage", "reset", "silent", "http"]


@contextmanager
def bad_server(kind: BadKind) -> Iterator[int]:
    """A hostile or broken 'TLS' port. garbage: random non-TLS bytes; reset: half a ServerHello then RST;
    silent: accepts and never answers; http: answers like a web server."""

    def misbehave(conn: socket.socket) -> None:
        conn.settimeout(1)
        conn.recv(4096)
        if kind == "garbage":
            conn.sendall(os.urandom(64) + b"\xff" * 16)
            conn.close()
        elif kind == "http":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()
        elif kind == "reset":
            conn.sendall(bytes([22, 3, 3, 0, 80, 2, 0, 0, 76, 3, 3]) + os.urandom(10))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        # silent: keep the connection open; tcp_server closes it at the end

    with tcp_server(misbehave) as port:
        yield port


class RsaPKI(TestPKI):
    """Like ``TestPKI`` but with RSA keys: DCMTK's retired profiles (+pa, +pn, +py, +px) only have RSA suites."""

    key_type = trustme.KeyType.RSA


JSSE_SERVER = """
import javax.net.ssl.*;
import java.io.*;
import java.security.KeyStore;

/** Test peer: args port keystore.p12 password protocols(comma-separated). One thread per connection. */
public class TlsServer {
    public static void main(String[] a) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(a[1])) { ks.load(in, a[2].toCharArray()); }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, a[2].toCharArray());
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), null, null);
        SSLServerSocket ss = (SSLServerSocket) ctx.getServerSocketFactory().createServerSocket(
            Integer.parseInt(a[0]), 64, java.net.InetAddress.getByName("127.0.0.1"));
        ss.setEnabledProtocols(a[3].split(","));
        while (true) {
            final SSLSocket s = (SSLSocket) ss.accept();
            new Thread(() -> {
                try { s.setSoTimeout(3000); s.startHandshake(); s.getOutputStream().write("ok\\n".getBytes()); }
                catch (Exception e) { }
                finally { try { s.close(); } catch (IOException e) { } }
            }).start();
        }
    }
}
"""


@contextmanager
def jsse_server(pki: TestPKI, protocols: tuple[str, ...] = ("TLSv1", "TLSv1.1", "TLSv1.2")) -> Iterator[int]:
    """A JSSE (OpenJDK) TLS server on ``protocols``; TLS 1.0/1.1 re-enabled through a security properties file."""
    java = require_program("java")
    openssl = require_program("openssl")
    port = free_port()
    d = Path(tempfile.mkdtemp(prefix="jsse-"))
    (d / "TlsServer.java").write_text(JSSE_SERVER, encoding="utf-8")
    # jdk.tls.disabledAlgorithms lists TLSv1 and TLSv1.1 by default; this keeps only SSLv3/RC4/NULL off.
    (d / "security.properties").write_text("jdk.tls.disabledAlgorithms=SSLv3, RC4, NULL\n", encoding="utf-8")
    subprocess.run([openssl, "pkcs12", "-export", "-in", str(pki.server_cert), "-inkey", str(pki.server_key),
                    "-out", str(d / "server.p12"), "-passout", "pass:test-only"], check=True, timeout=30,
                   capture_output=True)
    cmd = [java, f"-Djava.security.properties={d / 'security.properties'}", str(d / "TlsServer.java"), str(port),
           str(d / "server.p12"), "test-only", ",".join(protocols)]
    with running(cmd, port=port, cwd=d):
        yield port
