"""``dcsaudit listen``: a DICOM SCP that records the product as association *initiator* (PS3.2 N.8.5.1,
Table N.8-8; the sender side of N.8-3).

For every incoming association it records the Calling/Called AE titles, the implementation identity
(PS3.7 D.3.3.2), the proposed presentation contexts, the User Identity type and positive-response-
requested flag (PS3.7 D.3.3.7 — the passcode is never stored, and for types 3–5 only the token length),
and on the TLS port what the ClientHello offered (versions, suites, groups, signature algorithms,
RFC 8446 §4.1.2) plus any client certificate. It answers C-ECHO and C-STORE (keeping data under
``store_dir`` or discarding it) and accepts any identity, replying with an empty User Identity AC when a
positive response is requested, so that initiators that insist on one (``storescu --pos-response``)
carry on.

The ClientHello is read with ``MSG_PEEK`` before the socket is wrapped, so the real handshake is not
disturbed; parsing is :func:`dcsaudit.probes.tls.wire.parse_client_hello`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dcsaudit import certs
from dcsaudit.evidence import EvidenceLog
from dcsaudit.models.core import Reason
from dcsaudit.models.dicom import Initiator, PresentationContextResult, TlsOffer
from dcsaudit.rules.implementations import recognise
from dcsaudit.rules.sop_classes import name_of

HANDSHAKE_TIMEOUT = 10.0
PEEK_LIMIT = 16384
_SAFE = re.compile(r"[^0-9A-Za-z._-]")


@dataclass
class _Record:
    """Mutable while the association runs; frozen into an Initiator when it ends."""

    peer: str
    port: int
    tls: bool
    started: float = field(default_factory=time.perf_counter)
    calling_ae: str = ""
    called_ae: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)
    stored: int = 0
    outcome: str = "requested"
    tls_offer: TlsOffer | None = None


def _describe_cert(der: bytes) -> dict[str, str]:
    from cryptography import x509

    out = {"sha256": hashlib.sha256(der).hexdigest()}
    try:
        cert = x509.load_der_x509_certificate(der)
        out.update(subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
                   not_after=cert.not_valid_after_utc.isoformat())
    except ValueError:
        out["error"] = "not a parsable X.509 certificate"
    return out


def _peek_client_hello(sock: socket.socket) -> bytes:
    """Peek (without consuming) until one whole TLS record is buffered, or the deadline passes."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        data = sock.recv(PEEK_LIMIT, socket.MSG_PEEK)
        if not data:
            return b""
        if data[0] & 0x80:  # SSLv2-format hello: 2-byte header
            need = 2 + ((data[0] & 0x7F) << 8 | data[1]) if len(data) >= 2 else 3
        else:
            need = 5 + struct.unpack(">H", data[3:5])[0] if len(data) >= 5 else 6
        if len(data) >= min(need, PEEK_LIMIT):
            return data
        time.sleep(0.005)
    return data


class DicomListener:
    """Plain and/or TLS DICOM SCP recording each incoming association as an :class:`Initiator`."""

    def __init__(self, bind: str, dicom_port: int | None, dicom_tls_port: int | None, evidence: EvidenceLog, *,
                 tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None, store_dir: Path | None,
                 ae_title: str = "DCSAUDIT") -> None:
        self.bind = bind
        self.dicom_port = dicom_port
        self.dicom_tls_port = dicom_tls_port
        self.evidence = evidence
        self.tls_cert, self.tls_key, self.tls_ca = tls_cert, tls_key, tls_ca
        self.store_dir = store_dir
        self.ae_title = ae_title
        self._servers: list[Any] = []
        self._lock = threading.Lock()
        self._live: dict[int, _Record] = {}
        self._tls_by_peer: dict[tuple[str, int], TlsOffer] = {}
        self._done: list[Initiator] = []
        self._tmp: Path | None = None
        self._ssl: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ lifecycle

    def _ae(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = False
        ae.require_calling_aet = []
        ae.maximum_associations = 64
        ae.acse_timeout = 30
        ae.dimse_timeout = 30
        ae.network_timeout = 60
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        return ae

    def _ssl_context(self) -> ssl.SSLContext:
        cert, key = self.tls_cert, self.tls_key
        if cert is None or key is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="dcsaudit-listen-"))
            cert, key = certs.write_pem(*certs.issue("dcsaudit listener", hosts=[self.bind, "127.0.0.1"], days=2),
                                        self._tmp, "listener")
        sc = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sc.minimum_version = ssl.TLSVersion.TLSv1_2
        sc.load_cert_chain(str(cert), str(key))
        if self.tls_ca is not None:
            # Ask for (but do not require) a client certificate, so its presence is observable.
            sc.load_verify_locations(cafile=str(self.tls_ca))
            sc.verify_mode = ssl.CERT_OPTIONAL
        return sc

    def start(self) -> None:
        """Bind and serve in background threads; returns once listening (chosen ports are then set)."""
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested), (evt.EVT_ACCEPTED, self._on_state, ["accepted"]),
            (evt.EVT_REJECTED, self._on_state, ["rejected"]), (evt.EVT_ABORTED, self._on_state, ["aborted"]),
            (evt.EVT_RELEASED, self._on_state, ["released"]), (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store), (evt.EVT_USER_ID, self._on_user_id),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        try:
            if self.dicom_port is not None:
                srv = self._ae().start_server((self.bind, self.dicom_port), block=False, evt_handlers=handlers)
                assert srv is not None  # non-blocking start_server returns the server
                self._servers.append(srv)
                self.dicom_port = int(srv.server_address[1])
            if self.dicom_tls_port is not None:
                self._ssl = self._ssl_context()
                srv = self._ae().start_server((self.bind, self.dicom_tls_port), block=False, evt_handlers=handlers)
                assert srv is not None
                srv.get_request = self._tls_get_request(srv)  # type: ignore[method-assign]  # peek, then wrap
                self._servers.append(srv)
                self.dicom_tls_port = int(srv.server_address[1])
        except BaseException:
            self.stop()
            raise

    def stop(self) -> list[Initiator]:
        for srv in self._servers:
            with contextlib.suppress(Exception):
                srv.shutdown()
                srv.server_close()
        self._servers.clear()
        with self._lock:
            for key in list(self._live):
                self._finish(key)
            done = list(self._done)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        return done

    # ------------------------------------------------------------------ TLS accept

    def _tls_get_request(self, srv: Any) -> Any:
        def get_request() -> tuple[socket.socket, tuple[str, int]]:
            raw, addr = srv.socket.accept()
            peer = (str(addr[0]), int(addr[1]))
            offer: dict[str, Any] = {}
            try:
                hello = _peek_client_hello(raw)
                if hello:
                    from dcsaudit.probes.tls.wire import parse_client_hello

                    try:
                        ch = parse_client_hello(hello)
                        offer.update(versions=list(ch.versions), cipher_suites=list(ch.cipher_suites),
                                     groups=list(ch.groups), signature_algorithms=list(ch.signature_algorithms),
                                     server_name=ch.sni)
                    except ValueError as exc:
                        offer["handshake_error"] = f"first bytes are not a ClientHello: {exc}"
                raw.settimeout(HANDSHAKE_TIMEOUT)
                assert self._ssl is not None
                tls = self._ssl.wrap_socket(raw, server_side=True)
                tls.settimeout(None)
                offer.update(negotiated_version=tls.version(), negotiated_cipher=(tls.cipher() or ("",))[0])
                der = tls.getpeercert(binary_form=True)
                if der:
                    offer["client_certificate"] = _describe_cert(der)
                with self._lock:
                    self._tls_by_peer[peer] = TlsOffer(**offer)
                return tls, addr
            except (OSError, ValueError) as exc:
                # A failed handshake is still an observation of the initiator: record it, then drop it.
                offer["handshake_error"] = offer.get("handshake_error") or f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(OSError):
                    raw.close()
                rec = _Record(peer=peer[0], port=int(srv.server_address[1]), tls=True, outcome="tls_failure",
                              tls_offer=TlsOffer(**offer))
                with self._lock:
                    self._live[id(rec)] = rec
                    self._finish(id(rec))
                raise OSError("TLS handshake failed") from None

        return get_request

    # ------------------------------------------------------------------ association events

    def _record(self, event: Any) -> _Record:
        key = id(event.assoc)
        with self._lock:
            rec = self._live.get(key)
            if rec is None:
                local_port = int(event.assoc.acceptor.port or 0)
                rec = _Record(peer=str(event.assoc.requestor.address), port=local_port,
                              tls=self._is_tls_port(local_port))
                self._live[key] = rec
            return rec

    def _is_tls_port(self, port: int) -> bool:
        return self.dicom_tls_port is not None and port == self.dicom_tls_port

    def _on_requested(self, event: Any) -> None:
        assoc = event.assoc
        rq = assoc.requestor
        rec = self._record(event)
        rec.calling_ae = str(rq.primitive.calling_ae_title).strip()
        rec.called_ae = str(rq.primitive.called_ae_title).strip()
        uid = rq.user_identity
        contexts = [PresentationContextResult(context_id=int(cx.context_id or 0), abstract_syntax=str(cx.abstract_syntax),
                                              name=name_of(str(cx.abstract_syntax)),
                                              transfer_syntaxes=[str(ts) for ts in cx.transfer_syntax])
                    for cx in rq.requested_contexts]
        rec.fields.update(
            implementation_class_uid=str(rq.implementation_class_uid) if rq.implementation_class_uid else None,
            implementation_version_name=rq.implementation_version_name or None,
            max_pdu_length=rq.maximum_length,
            proposed_contexts=contexts,
        )
        rec.fields["implementation"] = recognise(rec.fields["implementation_class_uid"])
        if uid is not None:
            rec.fields.update(user_identity_type=uid.user_identity_type,
                              positive_response_requested=bool(uid.positive_response_requested),
                              user_identity_primary_length=len(uid.primary_field or b""))
            if uid.user_identity_type in (1, 2):
                rec.fields["username"] = (uid.primary_field or b"").decode("utf-8", errors="replace")[:64]
            # pynetdicom never answers types 1/2 with a User Identity AC; an initiator that requested a
            # positive response (storescu --pos-response) would then abort. Answer every type.
            assoc.acse._check_user_identity = lambda: self._accept_identity(uid)
        with self._lock:
            peer = (rec.peer, int(rq.port or 0))
            if peer in self._tls_by_peer:
                rec.tls = True
                rec.tls_offer = self._tls_by_peer.pop(peer)

    @staticmethod
    def _accept_identity(req: UserIdentityNegotiation) -> tuple[bool, UserIdentityNegotiation | None]:
        if not req.positive_response_requested:
            return True, None
        rsp = UserIdentityNegotiation()
        rsp.server_response = b""
        return True, rsp

    def _on_user_id(self, event: Any) -> tuple[bool, bytes | None]:
        return True, None  # only reached if the override above is bypassed; never looks at the secret

    def _on_state(self, event: Any, state: str) -> None:
        self._record(event).outcome = state

    def _on_echo(self, event: Any) -> int:
        self._record(event).services.append("C-ECHO")
        return 0x0000

    def _on_store(self, event: Any) -> int:
        rec = self._record(event)
        if "C-STORE" not in rec.services:
            rec.services.append("C-STORE")
        rec.stored += 1
        if self.store_dir is not None:
            try:
                ds = event.dataset
                ds.file_meta = event.file_meta
                name = _SAFE.sub("_", str(ds.SOPInstanceUID))[:128] or f"instance-{rec.stored}"
                self.store_dir.mkdir(parents=True, exist_ok=True)
                ds.save_as(self.store_dir / f"{name}.dcm", enforce_file_format=True)
            except Exception:
                return 0xA700  # Out of resources (PS3.4 B.2.3): we could not keep it
        return 0x0000

    def _on_close(self, event: Any) -> None:
        key = id(event.assoc)
        with self._lock:
            if key in self._live:
                self._finish(key)

    def _finish(self, key: int) -> None:
        """Freeze one record into an Initiator and its Evidence (caller holds the lock)."""
        rec = self._live.pop(key)
        init = Initiator(calling_ae=rec.calling_ae, called_ae=rec.called_ae, peer=rec.peer, port=rec.port,
                         tls=rec.tls, tls_offer=rec.tls_offer, services=rec.services, stored_instances=rec.stored,
                         outcome=rec.outcome, **rec.fields)
        ok = rec.outcome not in ("tls_failure",)
        summary = (f"initiator {rec.peer}: {rec.calling_ae!r} -> {rec.called_ae!r} on port {rec.port}"
                   f"{' (TLS)' if rec.tls else ''}: {rec.outcome}")
        if init.user_identity_type:
            summary += f", user identity type {init.user_identity_type}"
        ev = self.evidence.add("listen.dicom", f"{rec.peer}->{self.bind}:{rec.port}", ok=ok, summary=summary,
                               reason=None if ok else Reason.TLS_FAILURE,
                               data=init.model_dump(mode="json", exclude={"evidence"}),
                               duration_ms=(time.perf_counter() - rec.started) * 1000)
        self._done.append(init.model_copy(update={"evidence": [ev.id]}))
