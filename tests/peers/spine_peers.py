"""Peers for the inventory/identification tests: small real servers on 127.0.0.1.

pynetdicom SCPs, DCMTK and Orthanc come from ``dicom_peers``, rsyslog from ``tls_peers``; openssl here
runs in its echo mode (TLS whose payload never answers). The two hand-written servers here model
behaviours no packaged server offers on demand: a listener that accepts TCP and never answers, and a port that serves DICOM both in plaintext and TLS.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from tests.peers.common import LOOPBACK, TestPKI, free_port, require_program, running, tcp_server

# A-ASSOCIATE-RJ (result 1 permanent, source 1 service-user, reason 7 called-AE-not-recognized).
REJECT_CALLED_AE = struct.pack(">BBIBBBB", 0x03, 0, 4, 0, 1, 1, 7)


def server_tls_context(pki: TestPKI, client_cert: str = "none") -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    if client_cert != "none":
        ctx.load_verify_locations(str(pki.ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED if client_cert == "required" else ssl.CERT_OPTIONAL
    return ctx


@contextmanager
def silent_listener() -> Iterator[int]:
    """Accepts TCP connections and never sends a byte (a hung service, a tarpit)."""
    with tcp_server(lambda conn: None) as port:
        yield port


@contextmanager
def dual_plain_and_tls_dicom(pki: TestPKI) -> Iterator[int]:
    """One port that answers DICOM in plaintext and inside TLS (opportunistic TLS, which B.12 discourages).

    It peeks the first byte: 0x16 is a TLS handshake record, anything else is taken as a DICOM PDU.
    Either way it answers the A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ, which proves DICOM.
    """
    ctx = server_tls_context(pki)

    def serve(conn: socket.socket) -> None:
        conn.settimeout(5)
        first = conn.recv(1, socket.MSG_PEEK)
        stream: socket.socket = ctx.wrap_socket(conn, server_side=True) if first == b"\x16" else conn
        head = stream.recv(6)
        if len(head) == 6:
            (length,) = struct.unpack(">I", head[2:6])
            remaining = min(length, 65536)
            while remaining > 0:
                chunk = stream.recv(remaining)
                if not chunk:
                    break
                remaining -= len(chunk)
            stream.sendall(REJECT_CALLED_AE)
        stream.close()

    with tcp_server(serve, threaded=True, backlog=16) as port:
        yield port


@contextmanager
def openssl_s_server(pki: TestPKI, extra: list[str] | None = None) -> Iterator[int]:
    """TLS that is not DICOM: openssl's test server (``-www`` answers HTTP, so use the plain echo mode)."""
    openssl = require_program("openssl")
    port = free_port()
    cmd = [openssl, "s_server", "-accept", f"{LOOPBACK}:{port}", "-cert", str(pki.server_cert),
           "-key", str(pki.server_key), "-quiet", "-naccept", "1000", *(extra or [])]
    with running(cmd, port):
        yield port
