"""An audit-trail originator (PS3.15 A.5 messages over A.6 SYSLOG-TLS or A.7 SYSLOG-UDP).

The built-in demo deployment uses it so that the demo scan's actions cause real audit messages that the
collector receives and correlates. It builds messages for the A.5.3 events the demo can observe:
Application Activity (A.5.3.1), User Authentication (A.5.3.12), Security Alert (A.5.3.11), Query
(A.5.3.10) and DICOM Instances Transferred (A.5.3.7). Every message has PRI <85>, MSGID DICOM+RFC3881,
the UTF-8 BOM and an EventDateTime with a time zone; TLS frames are octet-counted (RFC 5425 §4.3) and
UDP carries one message per datagram (RFC 5426 §3.1).

Thread-safe: pynetdicom calls the demo SCP handlers from its own threads. Sending never raises: a
failure is kept in ``last_error`` and counted, because an audit originator must not break the service
it audits.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from typing import Literal

from dcsaudit.auditmsg import build
from dcsaudit.auditmsg.build import Participant, ParticipantObject

_IP_CHARS = set("0123456789.:abcdefABCDEF")


class AuditOriginator:
    def __init__(
        self,
        host: str,
        port: int,
        transport: Literal["tls", "udp"],
        *,
        ssl_context: ssl.SSLContext | None = None,
        app_name: str = "dcsaudit-demo",
        source_id: str = "DEMO",
        timeout: float = 5.0,
    ) -> None:
        if transport not in ("tls", "udp"):
            raise ValueError(f"transport must be 'tls' or 'udp', not {transport!r}")
        self.host = host
        self.port = port
        self.transport = transport
        self.app_name = app_name
        self.source_id = source_id
        self.timeout = timeout
        self._ctx = ssl_context
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None
        self._user_id = str(os.getpid())  # A.5.2: a process is identified as in local system logs

    # -- transport -------------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        if self.transport == "udp":
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.settimeout(self.timeout)
            return s
        ctx = self._ctx
        if ctx is None:
            # Without a context the demo trusts nothing and checks nothing: it is a loopback demo.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            return ctx.wrap_socket(raw, server_hostname=self.host if ctx.check_hostname else None)
        except BaseException:
            raw.close()
            raise

    def send_raw(self, msg: bytes) -> bool:
        """Send one RFC 5424 message; reconnect once if a kept TLS connection has gone."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._sock is None:
                        self._sock = self._connect()
                    if self.transport == "udp":
                        self._sock.sendto(msg, (self.host, self.port))
                    else:
                        self._sock.sendall(build.octet_frame(msg))
                    self.sent += 1
                    return True
                except (OSError, ssl.SSLError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self._close_locked()
                    if attempt == 2:
                        self.failed += 1
            return False

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sock is not None:
            try:
                if isinstance(self._sock, ssl.SSLSocket):
                    self._sock.settimeout(1.0)
                    self._sock.unwrap()  # RFC 5425 §4.4: close with close_notify
            except (OSError, ssl.SSLError, ValueError):
                pass
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def __enter__(self) -> AuditOriginator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- messages --------------------------------------------------------------------------------

    def _send(self, xml: bytes) -> bool:
        return self.send_raw(build.syslog_message(xml, app_name=self.app_name))

    def _me(self, roles: list[str], ae_titles: list[str] | None = None, requestor: bool = False) -> Participant:
        alt = "AETITLES=" + ";".join(ae_titles) if ae_titles else None
        return Participant(user_id=self._user_id, requestor=requestor, roles=roles, alternative_user_id=alt,
                           user_name=self.app_name, nap_id=_local_name(), nap_type="1")

    def application_activity(self, started: bool, ae_titles: list[str]) -> bool:
        """PS3.15 A.5.3.1: EventID 110100, EventTypeCode 110120 Application Start / 110121 Stop."""
        xml = build.audit_xml(
            "110100", action="E", type_codes=["110120" if started else "110121"],
            participants=[self._me(["110150"], ae_titles)], source_id=self.source_id,
        )
        return self._send(xml)

    def user_authentication(self, user: str, success: bool, peer: str) -> bool:
        """PS3.15 A.5.3.12: EventID 110114, EventTypeCode 110122 Login; outcome 4 when refused.

        The user authenticated carries NetworkAccessPointID/TypeCode (mandatory in A.5.3.12).
        """
        person = Participant(user_id=user or "(none)", requestor=True, nap_id=peer, nap_type=_nap_type(peer))
        xml = build.audit_xml(
            "110114", action="E", outcome="0" if success else "4", type_codes=["110122"],
            participants=[person, self._me([])], source_id=self.source_id,
            outcome_description=None if success else "user identity rejected",
        )
        return self._send(xml)

    def security_alert(self, event_type_code: str, subject: str, peer: str) -> bool:
        """PS3.15 A.5.3.11: EventID 110113 with a security-alert EventTypeCode (110126-110142).

        Outcome 4 (minor failure): the alert was detected and mitigated (the request was refused).
        """
        performer = Participant(user_id=peer, requestor=True, nap_id=peer, nap_type=_nap_type(peer))
        node_id = set(subject) <= _IP_CHARS or "@" in subject
        obj = ParticipantObject(
            object_id=subject,
            id_type=("110182", "DCM", "Node ID") if node_id else ("12", "RFC-3881", "URI"),
            type_code="2",
        )
        xml = build.audit_xml(
            "110113", action="E", outcome="4", type_codes=[event_type_code],
            participants=[self._me([]), performer], source_id=self.source_id, objects=[obj],
        )
        return self._send(xml)

    def query(self, sop_class_uid: str, peer: str, calling_ae: str, query_dataset: bytes = b"",
              called_ae: str | None = None) -> bool:
        """PS3.15 A.5.3.10: EventID 110112; the SOP Class object carries the query and its transfer syntax."""
        querier = Participant(user_id=calling_ae or peer, requestor=True, roles=["110153"],
                              alternative_user_id=f"AETITLES={calling_ae}" if calling_ae else None,
                              nap_id=peer, nap_type=_nap_type(peer))
        obj = ParticipantObject(
            object_id=sop_class_uid, id_type=("110181", "DCM", "SOP Class UID"), type_code="2", role="3",
            query=query_dataset, details=[("TransferSyntax", b"1.2.840.10008.1.2.1")],
        )
        xml = build.audit_xml(
            "110112", action="E", participants=[querier, self._me(["110152"], [called_ae] if called_ae else None)],
            source_id=self.source_id, objects=[obj],
        )
        return self._send(xml)

    def instances_transferred(self, peer: str, calling_ae: str, study_uid: str, patient_id: str,
                              sop_class_uid: str, count: int = 1, called_ae: str | None = None,
                              action: Literal["C", "R", "U"] = "C") -> bool:
        """PS3.15 A.5.3.7: EventID 110104 for instances received from ``peer`` (source 110153)."""
        from lxml import etree

        source = Participant(user_id=calling_ae or peer, requestor=True, roles=["110153"],
                             alternative_user_id=f"AETITLES={calling_ae}" if calling_ae else None,
                             nap_id=peer, nap_type=_nap_type(peer))
        sop = etree.Element("SOPClass")
        sop.set("UID", sop_class_uid)
        sop.set("NumberOfInstances", str(count))
        study = ParticipantObject(object_id=study_uid, id_type=("110180", "DCM", "Study Instance UID"),
                                  type_code="2", role="3", description=[sop])
        patient = ParticipantObject(object_id=patient_id or "UNKNOWN", id_type=("2", "RFC-3881", "Patient Number"),
                                    type_code="1", role="1")
        xml = build.audit_xml(
            "110104", action=action,
            participants=[source, self._me(["110152"], [called_ae] if called_ae else None)],
            source_id=self.source_id, objects=[study, patient],
        )
        return self._send(xml)

    def association(self, peer: str, calling_ae: str, called_ae: str, accepted: bool) -> bool | None:
        """An association attempt. PS3.15 A.5.3 has no association event: a *rejected* one is reported as
        a Security Alert with EventTypeCode 110126 Node Authentication (A.5.3.11); an accepted one sends
        nothing (returns None)."""
        if accepted:
            return None
        return self.security_alert("110126", peer, peer)


def _nap_type(addr: str) -> str:
    """NetworkAccessPointTypeCode: 2 for an IP address, 1 for a machine name (PS3.15 A.5.1)."""
    return "2" if set(addr) <= _IP_CHARS and any(c in addr for c in ".:") else "1"


def _local_name() -> str:
    return socket.gethostname() or "localhost"
