"""DICOM Upper Layer codec and a small asyncio association requestor for the audit (PS3.8 §9.3, PS3.7 D.3.3).

Why not pynetdicom as the requestor: the audit must read every reject triple and context result,
send deliberately odd requests (random titles, bogus identities), hold connections idle to time the
peer's timers, and survive hostile acceptors (garbage, absurd PDU lengths, silent peers) with one
deadline per step. A few hundred lines of explicit PDU code over asyncio streams do that without a
thread per association, and with every read bounded in size and time. pynetdicom still serves as the
acceptor in ``dcsaudit listen`` and as a test peer; a scan never imports it (0.45 s): the fixed-size
A-ASSOCIATE-RJ and A-ABORT bodies are three and two octets at fixed offsets, decoded here as pynetdicom's
``A_ASSOCIATE_RJ`` / ``A_ABORT_RQ`` do (a test holds the two codecs equal).

Decoding never trusts the peer: every length is checked against the bytes actually present and a
malformed PDU raises :class:`PduError`, which the caller turns into a ``protocol_error`` result.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from dataclasses import dataclass, field

from dcsaudit import __version__

# dcsaudit's implementation identity (PS3.7 D.3.3.2), sent in every A-ASSOCIATE-RQ we make.
IMPLEMENTATION_CLASS_UID = "2.25.48015543932512258103892387391833582057"
IMPLEMENTATION_VERSION_NAME = f"DCSAUDIT_{__version__}"[:16]
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
# What we announce we can receive (PS3.8 §D.1 Maximum Length) and the most we ever buffer.
MAX_PDU_RECEIVE = 16382
MAX_PDU_ACCEPTED = 1 << 20

PDU_NAMES = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF",
             5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}

# PS3.8 §9.3.4 Table 9-21.
RJ_RESULT = {1: "rejected-permanent", 2: "rejected-transient"}
RJ_SOURCE = {1: "DICOM UL service-user", 2: "DICOM UL service-provider (ACSE related function)",
             3: "DICOM UL service-provider (Presentation related function)"}
RJ_REASON = {
    1: {1: "no-reason-given", 2: "application-context-name-not-supported", 3: "calling-AE-title-not-recognized",
        7: "called-AE-title-not-recognized"},
    2: {1: "no-reason-given", 2: "protocol-version-not-supported"},
    3: {0: "reserved", 1: "temporary-congestion", 2: "local-limit-exceeded"},
}
# PS3.8 §9.3.8 Table 9-26 (source 2, service-provider).
ABORT_REASON = {0: "reason-not-specified", 1: "unrecognized-PDU", 2: "unexpected-PDU", 4: "unrecognized-PDU-parameter",
                5: "unexpected-PDU-parameter", 6: "invalid-PDU-parameter-value"}


class PduError(Exception):
    """The peer sent something that is not a well-formed DICOM UL PDU."""


class PeerClosed(Exception):
    """The peer closed the TCP connection."""


def describe_reject(result: int, source: int, reason: int) -> tuple[str, str, str]:
    return (RJ_RESULT.get(result, f"unknown ({result})"), RJ_SOURCE.get(source, f"unknown ({source})"),
            RJ_REASON.get(source, {}).get(reason, f"reserved ({reason})"))


# --------------------------------------------------------------------------- encoding


def _ae(title: str) -> bytes:
    return title.encode("ascii", errors="replace")[:16].ljust(16, b" ")


def _item(item_type: int, body: bytes) -> bytes:
    if len(body) > 0xFFFF:
        raise ValueError("item longer than 65535 bytes")
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def _uid(value: str) -> bytes:
    # UIDs in PDU items are not padded (PS3.8 §9.3.2.2.1 allows, PS3.5 §9.1 pads to even only in datasets).
    return value.encode("ascii")


@dataclass(frozen=True)
class ProposedContext:
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...] = (IMPLICIT_LE, EXPLICIT_LE)


@dataclass(frozen=True)
class UserIdentityRQ:
    """User Identity sub-item 0x58 (PS3.7 D.3.3.7.1). ``secondary`` only for type 2."""

    identity_type: int
    primary: bytes
    secondary: bytes = b""
    positive_response_requested: bool = True

    def encode(self) -> bytes:
        body = struct.pack(">BBH", self.identity_type, 1 if self.positive_response_requested else 0,
                           len(self.primary)) + self.primary + struct.pack(">H", len(self.secondary)) + self.secondary
        return _item(0x58, body)


def encode_associate_rq(called_ae: str, calling_ae: str, contexts: list[ProposedContext],
                        user_identity: UserIdentityRQ | None = None) -> bytes:
    """A-ASSOCIATE-RQ (PS3.8 §9.3.2) with Maximum Length, Implementation Class UID and Version Name."""
    items = [_item(0x10, _uid(APPLICATION_CONTEXT))]
    for cx in contexts:
        sub = _item(0x30, _uid(cx.abstract_syntax)) + b"".join(_item(0x40, _uid(ts)) for ts in cx.transfer_syntaxes)
        items.append(_item(0x20, struct.pack(">BBBB", cx.context_id, 0, 0, 0) + sub))
    user = (_item(0x51, struct.pack(">I", MAX_PDU_RECEIVE)) + _item(0x52, _uid(IMPLEMENTATION_CLASS_UID))
            + _item(0x55, IMPLEMENTATION_VERSION_NAME.encode("ascii")))
    if user_identity is not None:
        user += user_identity.encode()
    items.append(_item(0x50, user))
    body = struct.pack(">HH", 1, 0) + _ae(called_ae) + _ae(calling_ae) + bytes(32) + b"".join(items)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


RELEASE_RQ = struct.pack(">BBI", 0x05, 0, 4) + bytes(4)
RELEASE_RP = struct.pack(">BBI", 0x06, 0, 4) + bytes(4)
ABORT_RQ = struct.pack(">BBI", 0x07, 0, 4) + bytes(4)  # source 0 = service-user


def _element(group: int, elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", group, elem, len(value)) + value


def encode_c_echo_rq(context_id: int, message_id: int = 1) -> bytes:
    """P-DATA-TF carrying a C-ECHO-RQ command set in Implicit VR Little Endian (PS3.7 §9.3.5.1)."""
    body = (_element(0, 0x0002, VERIFICATION.encode()) + _element(0, 0x0100, struct.pack("<H", 0x0030))
            + _element(0, 0x0110, struct.pack("<H", message_id)) + _element(0, 0x0800, struct.pack("<H", 0x0101)))
    command = _element(0, 0x0000, struct.pack("<I", len(body))) + body
    # PDV: context id, message control header 0x03 = command, last fragment.
    pdv = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


# --------------------------------------------------------------------------- decoding


def iter_items(data: bytes) -> list[tuple[int, bytes]]:
    items, i = [], 0
    while i < len(data):
        if i + 4 > len(data):
            raise PduError("truncated item header")
        item_type, _, length = struct.unpack(">BBH", data[i : i + 4])
        if i + 4 + length > len(data):
            raise PduError(f"item 0x{item_type:02x} longer than its PDU")
        items.append((item_type, data[i + 4 : i + 4 + length]))
        i += 4 + length
    return items


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\x00 ").decode("ascii", errors="replace")


@dataclass
class AcceptInfo:
    """The parts of an A-ASSOCIATE-AC the audit reads (PS3.8 §9.3.3, PS3.7 D.3.3)."""

    called_ae: str = ""
    calling_ae: str = ""
    contexts: dict[int, tuple[int, str | None]] = field(default_factory=dict)  # id -> (result, TS)
    max_pdu_length: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    user_identity_response: bytes | None = None


def decode_associate_ac(body: bytes) -> AcceptInfo:
    if len(body) < 68:
        raise PduError("A-ASSOCIATE-AC shorter than its fixed fields")
    info = AcceptInfo(called_ae=_text(body[4:20]), calling_ae=_text(body[20:36]))
    for item_type, item in iter_items(body[68:]):
        if item_type == 0x21:
            if len(item) < 4:
                raise PduError("short presentation context item")
            ts = None
            for sub_type, sub in iter_items(item[4:]):
                if sub_type == 0x40:
                    ts = _text(sub)
            info.contexts[item[0]] = (item[2], ts)
        elif item_type == 0x50:
            for sub_type, sub in iter_items(item):
                if sub_type == 0x51 and len(sub) == 4:
                    info.max_pdu_length = struct.unpack(">I", sub)[0]
                elif sub_type == 0x52:
                    info.implementation_class_uid = _text(sub)
                elif sub_type == 0x55:
                    info.implementation_version_name = _text(sub)
                elif sub_type == 0x59:
                    if len(sub) < 2:
                        raise PduError("short user identity AC item")
                    n = struct.unpack(">H", sub[:2])[0]
                    info.user_identity_response = sub[2 : 2 + n]
    return info


def decode_associate_rj(body: bytes) -> tuple[int, int, int]:
    """(result, source, reason/diagnostic) of an A-ASSOCIATE-RJ body (PS3.8 §9.3.4: one reserved octet, then
    the three fields, one octet each; values are read by ``rules.association_answers``); :class:`PduError`
    when the body is not 4 octets."""
    if len(body) != 4:
        raise PduError(f"A-ASSOCIATE-RJ with length {len(body)} (PS3.8 says 4)")
    return body[1], body[2], body[3]


def decode_abort(body: bytes) -> tuple[int, int]:
    """(source, reason/diagnostic) of an A-ABORT body (PS3.8 §9.3.8: two reserved octets, then the two fields);
    :class:`PduError` when the body is not 4 octets."""
    if len(body) != 4:
        raise PduError(f"A-ABORT with length {len(body)} (PS3.8 says 4)")
    return body[2], body[3]


def decode_command_status(pdata_body: bytes) -> tuple[bool, int | None]:
    """From a P-DATA-TF body: (is the last command fragment, Status (0000,0900) if present)."""
    i, last, status = 0, False, None
    while i + 6 <= len(pdata_body):
        length = struct.unpack(">I", pdata_body[i : i + 4])[0]
        if length < 2 or i + 4 + length > len(pdata_body):
            raise PduError("bad PDV length")
        control = pdata_body[i + 5]
        value = pdata_body[i + 6 : i + 4 + length]
        if control & 0x01:  # command fragment
            j = 0
            while j + 8 <= len(value):
                group, elem, vlen = struct.unpack("<HHI", value[j : j + 8])
                if group == 0 and elem == 0x0900 and vlen == 2 and j + 10 <= len(value):
                    status = struct.unpack("<H", value[j + 8 : j + 10])[0]
                j += 8 + vlen
            last = last or bool(control & 0x02)
        i += 4 + length
    return last, status


# --------------------------------------------------------------------------- transport


@dataclass
class Pdu:
    pdu_type: int
    body: bytes

    @property
    def name(self) -> str:
        return PDU_NAMES.get(self.pdu_type, f"unknown 0x{self.pdu_type:02x}")


def ack_at_once(reader: asyncio.StreamReader) -> None:
    """Acknowledge what arrives without the kernel's delayed ACK (Linux TCP_QUICKACK, re-armed per read).

    DCMTK and Orthanc write a PDU in several small writes with Nagle's algorithm on: each write after the
    first waits for our ACK, which Linux delays up to 40 ms. Measured on Orthanc over TLS: a whole
    association audit 0.52 s → 0.10 s (issue 16). Only our ACK timing changes, never what we send.
    """
    transport = getattr(reader, "_transport", None)  # StreamReader keeps it privately; absent → no-op
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


async def read_pdu(reader: asyncio.StreamReader, timeout: float, limit: int = MAX_PDU_ACCEPTED) -> Pdu:
    """Read one PDU within ``timeout`` seconds; refuses unknown types and lengths above ``limit``."""
    ack_at_once(reader)
    async with asyncio.timeout(timeout):
        try:
            head = await reader.readexactly(6)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise PeerClosed("closed before any PDU") from None
            raise PduError(f"closed inside a PDU header ({len(exc.partial)} bytes)") from None
        pdu_type, _, length = struct.unpack(">BBI", head)
        if pdu_type not in PDU_NAMES:
            raise PduError(f"unknown PDU type 0x{pdu_type:02x}")
        if length > limit:
            raise PduError(f"PDU length {length} above the {limit} bytes we accept")
        if pdu_type in (3, 5, 6, 7) and length != 4:
            raise PduError(f"{PDU_NAMES[pdu_type]} with length {length} (PS3.8 says 4)")
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise PduError(f"closed inside a {PDU_NAMES[pdu_type]} body") from None
        return Pdu(pdu_type, body)


@dataclass
class Timeouts:
    connect: float
    tls: float
    acse: float
    dimse: float


async def open_stream(host: str, port: int, timeouts: Timeouts, ssl_ctx: ssl.SSLContext | None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP (and TLS) connect bounded by the connect and handshake timeouts."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeouts.connect)
    if ssl_ctx is not None:
        try:
            await asyncio.wait_for(
                writer.start_tls(ssl_ctx, server_hostname=host),
                timeouts.tls)
        except BaseException:
            writer.transport.abort()
            raise
    return reader, writer


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()
        await asyncio.wait_for(writer.wait_closed(), 1.0)
