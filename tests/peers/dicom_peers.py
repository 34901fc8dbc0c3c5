"""Real DICOM peers for the association audit and listener tests, on 127.0.0.1 free ports only.

- :func:`pynetdicom_scp` — in-process pynetdicom SCP with called/calling AE checks and an EVT_USER_ID
  handler (the pynetdicom test habit: start a real server, stop it in teardown).
- :func:`storescp` — DCMTK storescp, plain or TLS.
- :func:`orthanc` — Orthanc with DicomCheckCalledAet true/false (tmp config and storage).
- :func:`hostile_acceptor` — a TCP server that never answers, sends garbage, announces an absurd PDU
  length, or accepts and then aborts.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from tests.peers.common import LOOPBACK, free_port, require_program, running, tcp_server

UserIdHandler = Callable[[Any], tuple[bool, bytes | None]]


def _refuse_without_identity(triple: tuple[int, int, int]) -> Callable[[Any], None]:
    """EVT_REQUESTED handler: reject an A-ASSOCIATE-RQ that carries no User Identity sub-item (0x58)."""
    def requested(event: Any) -> None:
        if event.assoc.requestor.user_identity is None:
            event.assoc.acse.send_reject(*triple)
            time.sleep(0.1)  # let the DUL thread send the RJ before pynetdicom closes the socket
    return requested


@contextmanager
def pynetdicom_scp(ae_title: str = "TESTSCP", *, require_called: bool = False, require_calling: list[str] | None = None,
                   user_id: UserIdHandler | None = None, query_retrieve: bool = False, max_associations: int = 10,
                   acse_timeout: float = 30, network_timeout: float = 60, ssl_context: Any = None,
                   require_identity: tuple[int, int, int] | None = None) -> Iterator[int]:
    """pynetdicom SCP; ``require_identity`` is the A-ASSOCIATE-RJ triple for requests without an identity."""
    ae = AE(ae_title=ae_title)
    ae.add_supported_context(Verification)
    for cx in AllStoragePresentationContexts[:8]:
        ae.add_supported_context(cx.abstract_syntax)
    if query_retrieve:
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.add_supported_context(ModalityWorklistInformationFind)
    ae.require_called_aet = require_called
    ae.require_calling_aet = require_calling or []
    ae.maximum_associations = max_associations
    ae.acse_timeout = acse_timeout
    ae.network_timeout = network_timeout
    handlers: list[Any] = [(evt.EVT_USER_ID, user_id)] if user_id else []
    if require_identity is not None:
        handlers.append((evt.EVT_REQUESTED, _refuse_without_identity(require_identity)))
    port = free_port()
    server = ae.start_server((LOOPBACK, port), block=False, evt_handlers=handlers, ssl_context=ssl_context)
    assert server is not None
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def storescp(tmp: Path, *, ae_title: str = "STORESCP", tls: tuple[Path, Path] | None = None,
             extra: list[str] | None = None) -> Iterator[int]:
    prog = require_program("storescp")
    port = free_port()
    cmd = [prog, "-aet", ae_title, "--ignore", "-od", str(tmp), *(extra or [])]
    if tls is not None:
        key, cert = tls
        cmd += ["+tls", str(key), str(cert), "-ic"]
    cmd.append(str(port))
    env = {**os.environ, "TCP_NODELAY": "1"}
    with running(cmd, port=port, env=env):
        yield port


@contextmanager
def orthanc(tmp: Path, *, check_called_aet: bool, ae_title: str = "ORTHANC",
            modalities: dict[str, list[Any]] | None = None, always_allow: bool = True) -> Iterator[int]:
    """Orthanc; ``modalities`` is its DicomModalities list, ``always_allow`` its DicomAlwaysAllow* flags."""
    prog = require_program("Orthanc")
    port, http = free_port(), free_port()
    storage = tmp / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "dcsaudit-test", "DicomAet": ae_title, "DicomPort": port, "HttpPort": http,
        "StorageDirectory": str(storage), "IndexDirectory": str(storage), "DicomCheckCalledAet": check_called_aet,
        "RemoteAccessAllowed": False, "HttpServerEnabled": True, "AuthenticationEnabled": False,
        "DicomServerEnabled": True, "Plugins": [], "DicomAlwaysAllowEcho": always_allow,
        "DicomAlwaysAllowStore": always_allow, "DicomAlwaysAllowFind": always_allow,
        "DicomAlwaysAllowMove": always_allow, "DicomAlwaysAllowGet": always_allow,
        "DicomModalities": modalities or {},
    }
    cfg = tmp / "orthanc.json"
    cfg.write_text(json.dumps(config))
    with running([prog, str(cfg)], port=port, cwd=tmp):
        yield port


HostileKind = Literal["silent", "garbage", "absurd_length", "abort", "close", "abort_after_accept"]


def _item(t: int, body: bytes) -> bytes:
    return struct.pack(">BBH", t, 0, len(body)) + body


def minimal_ac(rq: bytes) -> bytes:
    """An A-ASSOCIATE-AC accepting context 1 with Implicit VR LE, echoing the RQ's AE titles."""
    titles = rq[10:42] if len(rq) >= 42 else b" " * 32
    items = (_item(0x10, b"1.2.840.10008.3.1.1.1")
             + _item(0x21, bytes([1, 0, 0, 0]) + _item(0x40, b"1.2.840.10008.1.2"))
             + _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4")))
    body = struct.pack(">HH", 1, 0) + titles + bytes(32) + items
    return struct.pack(">BBI", 0x02, 0, len(body)) + body


@contextmanager
def hostile_acceptor(kind: HostileKind) -> Iterator[int]:
    """A TCP acceptor that misbehaves after reading the A-ASSOCIATE-RQ (or without reading it)."""

    def misbehave(conn: socket.socket) -> None:
        conn.settimeout(2)
        rq = conn.recv(65536) if kind != "silent" else b""
        if kind == "garbage":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + os.urandom(64))
        elif kind == "absurd_length":
            conn.sendall(struct.pack(">BBI", 0x02, 0, 0xFFFFFFF0) + b"\x00\x01\x00\x00")
        elif kind == "abort":
            conn.sendall(struct.pack(">BBI", 0x07, 0, 4) + bytes([0, 0, 2, 0]))
            conn.close()
        elif kind == "close":
            conn.close()
        elif kind == "abort_after_accept":
            conn.sendall(minimal_ac(rq))
            conn.recv(65536)  # the C-ECHO-RQ
            conn.sendall(struct.pack(">BBI", 0x07, 0, 4) + bytes([0, 0, 2, 0]))
            conn.close()

    with tcp_server(misbehave, backlog=16) as port:
        yield port
