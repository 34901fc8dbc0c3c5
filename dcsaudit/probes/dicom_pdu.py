"""Minimal DICOM Upper Layer PDU codec for service identification (PS3.8 §9.3).

Identification must be fast and must survive hostile peers, so it speaks the few PDUs it needs with
raw bytes over asyncio streams instead of a full DUL state machine. The deep association audit
(AE policy, user identity, contexts) uses pynetdicom in ``dicom_assoc``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dcsaudit import __version__

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
# dcsaudit's Implementation Class UID: a UUID-derived OID (PS3.5 B.2), fixed for the project.
IMPLEMENTATION_CLASS_UID = "2.25.48015543932512258103892387391833582057"
IMPLEMENTATION_VERSION_NAME = f"DCSAUDIT_{__version__}"[:16]
MAX_PDU_RECEIVE = 16382

PDU_NAMES = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF",
             5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}
# Identification refuses to buffer more than this from an unknown peer.
MAX_IDENTIFY_PDU = 1 << 20


def _ae(title: str) -> bytes:
    raw = title.encode("ascii", errors="replace")[:16]
    return raw.ljust(16, b" ")


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(body)) + body


def associate_rq(called_ae: str, calling_ae: str, abstract_syntax: str = VERIFICATION_SOP_CLASS) -> bytes:
    """A-ASSOCIATE-RQ proposing one presentation context (PS3.8 §9.3.2)."""
    pres_ctx = _item(
        0x20,
        struct.pack(">BBBB", 1, 0, 0, 0) + _item(0x30, abstract_syntax.encode()) + _item(0x40, IMPLICIT_VR_LE.encode()),
    )
    user_info = _item(
        0x50,
        _item(0x51, struct.pack(">I", MAX_PDU_RECEIVE))
        + _item(0x52, IMPLEMENTATION_CLASS_UID.encode())
        + _item(0x55, IMPLEMENTATION_VERSION_NAME.encode()),
    )
    variable = _item(0x10, APPLICATION_CONTEXT.encode()) + pres_ctx + user_info
    fixed = struct.pack(">HH", 1, 0) + _ae(called_ae) + _ae(calling_ae) + bytes(32)
    body = fixed + variable
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


RELEASE_RQ = struct.pack(">BBI", 0x05, 0, 4) + bytes(4)
ABORT = struct.pack(">BBI", 0x07, 0, 4) + bytes(4)


@dataclass(frozen=True)
class PduHeader:
    pdu_type: int
    length: int

    @property
    def name(self) -> str:
        return PDU_NAMES.get(self.pdu_type, f"unknown 0x{self.pdu_type:02x}")


def parse_header(head: bytes) -> PduHeader | None:
    """A plausible DICOM PDU header, or None: type 1-7, reserved byte zero, bounded length."""
    if len(head) < 6:
        return None
    pdu_type, reserved, length = struct.unpack(">BBI", head[:6])
    if pdu_type not in PDU_NAMES or reserved != 0 or length > MAX_IDENTIFY_PDU:
        return None
    if pdu_type in (3, 5, 6, 7) and length != 4:
        return None
    return PduHeader(pdu_type, length)


@dataclass(frozen=True)
class AssociateAnswer:
    """What an acceptor answered to our A-ASSOCIATE-RQ."""

    pdu: str
    result: int | None = None  # RJ/ABORT fields, PS3.8 §9.3.4 / §9.3.8
    source: int | None = None
    reason: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    max_pdu_length: int | None = None
    context_accepted: bool | None = None


def _iter_items(data: bytes) -> list[tuple[int, bytes]]:
    items, i = [], 0
    while i + 4 <= len(data):
        item_type, _, length = struct.unpack(">BBH", data[i : i + 4])
        items.append((item_type, data[i + 4 : i + 4 + length]))
        i += 4 + length
    return items


def parse_answer(header: PduHeader, body: bytes) -> AssociateAnswer:
    if header.pdu_type == 3:
        return AssociateAnswer(pdu=header.name, result=body[1], source=body[2], reason=body[3])
    if header.pdu_type == 7:
        return AssociateAnswer(pdu=header.name, source=body[2], reason=body[3])
    if header.pdu_type != 2 or len(body) < 68:
        return AssociateAnswer(pdu=header.name)
    uid = version = None
    max_len = None
    accepted = None
    for item_type, item in _iter_items(body[68:]):
        if item_type == 0x21 and len(item) >= 4:
            accepted = item[2] == 0
        elif item_type == 0x50:
            for sub_type, sub in _iter_items(item):
                if sub_type == 0x51 and len(sub) == 4:
                    max_len = struct.unpack(">I", sub)[0]
                elif sub_type == 0x52:
                    uid = sub.rstrip(b"\x00 ").decode("ascii", errors="replace")
                elif sub_type == 0x55:
                    version = sub.rstrip(b"\x00 ").decode("ascii", errors="replace")
    return AssociateAnswer(pdu=header.name, implementation_class_uid=uid, implementation_version_name=version,
                           max_pdu_length=max_len, context_accepted=accepted)
