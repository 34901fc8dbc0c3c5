"""The gate in front of pynetdicom in ``dcsaudit listen``: what a DICOM initiator may send before the
association machinery sees it (PS3.8 §9.3).

pynetdicom trusts its peer: it allocates the declared PDU length before reading (a header declaring
0xFFFFFFFF grows memory without bound), and a malformed A-ASSOCIATE-RQ (an even presentation context id,
User Identity type 9, …) raises inside its reactor thread, which then never answers and leaves no record.
This module checks, on bytes only and with bounded memory:

- :class:`PduStream`: PDU boundaries of a byte stream, one header at a time (bodies are never buffered),
  so a relay can refuse a PDU by its header (type 1-7, PS3.8 §9.3.1; length within a cap) before the body
  arrives;
- :func:`check_associate_rq`: the structure of an A-ASSOCIATE-RQ body (PS3.8 §9.3.2, Annex D.3.3), and
  then pynetdicom's own decoder as a second gate, so that what passes cannot raise in its reactor;
- :func:`associate_rj` / :func:`abort`: the answers sent to an initiator that is turned away.

Pure: no sockets, no threads (fuzzed in ``tests/test_fuzz_parsers.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

PDU_TYPES = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF",
             5: "A-RELEASE-RQ", 6: "A-RELEASE-RP", 7: "A-ABORT"}
HEADER = 6
MAX_RQ = 256 * 1024  # an A-ASSOCIATE-RQ with 128 contexts and a large JWT stays far below this
MAX_PDU = 1024 * 1024  # any PDU; above it the peer is aborted before pynetdicom allocates anything
_UID_MAX = 64  # PS3.5 §9.1


def associate_rj(result: int, source: int, reason: int) -> bytes:
    """A-ASSOCIATE-RJ (PS3.8 §9.3.4): result 1 permanent / 2 transient; source 1 service-user,
    2 service-provider (ACSE), 3 service-provider (presentation)."""
    return struct.pack(">BBIBBBB", 0x03, 0, 4, 0, result, source, reason)


def abort(reason: int, source: int = 2) -> bytes:
    """A-ABORT (PS3.8 §9.3.8); source 2 = service-provider, reason 1 unrecognized PDU, 2 unexpected PDU,
    4 unrecognized PDU parameter, 5 unexpected PDU parameter, 6 invalid PDU parameter value."""
    return struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, source, reason)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a PDU is turned away, and the PDU to answer with."""

    reason: str
    answer: bytes


@dataclass(frozen=True, slots=True)
class PduHeader:
    offset: int  # where the header starts in the chunk passed to feed(); may be negative (split header)
    pdu_type: int
    length: int


@dataclass
class PduStream:
    """PDU boundaries of one direction of an association (feed chunks; bodies pass through unbuffered)."""

    _header: bytearray = field(default_factory=bytearray)
    _remaining: int = 0  # octets of the current PDU body still to come

    def feed(self, data: bytes) -> list[PduHeader]:
        """Headers completed by ``data``, with the offset of each header's first octet within ``data``."""
        out: list[PduHeader] = []
        pos, n = 0, len(data)
        while pos < n:
            if self._remaining:
                step = min(self._remaining, n - pos)
                self._remaining -= step
                pos += step
                continue
            take = min(HEADER - len(self._header), n - pos)
            start = pos - len(self._header)
            self._header += data[pos:pos + take]
            pos += take
            if len(self._header) == HEADER:
                pdu_type, _reserved, length = struct.unpack(">BBI", bytes(self._header))
                self._header.clear()
                self._remaining = length
                out.append(PduHeader(start, pdu_type, length))
        return out


def check_header(h: PduHeader, *, first: bool) -> Refusal | None:
    """The header alone: a known PDU type, an A-ASSOCIATE-RQ only first, a length within the caps."""
    if h.pdu_type not in PDU_TYPES:
        return Refusal(f"unrecognised PDU type 0x{h.pdu_type:02x} (PS3.8 §9.3.1)", abort(1))
    if first and h.pdu_type != 1:
        return Refusal(f"first PDU is {PDU_TYPES[h.pdu_type]}, not an A-ASSOCIATE-RQ", abort(2))
    if not first and h.pdu_type == 1:
        return Refusal("a second A-ASSOCIATE-RQ on an established connection", abort(2))
    cap = MAX_RQ if h.pdu_type == 1 else MAX_PDU
    if h.length > cap:
        return Refusal(f"{PDU_TYPES[h.pdu_type]} declares {h.length} octets, above the listener's limit of {cap}",
                       abort(6))
    return None


def _items(data: bytes, where: str) -> list[tuple[int, bytes]]:
    """Items/sub-items: type (1), reserved (1), length (2), value (PS3.8 §9.3.2.x)."""
    out, pos = [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError(f"{where}: truncated item header")
        item_type, length = data[pos], struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if pos + 4 + length > len(data):
            raise ValueError(f"{where}: item 0x{item_type:02x} declares {length} octets past the end")
        out.append((item_type, data[pos + 4:pos + 4 + length]))
        pos += 4 + length
    return out


def _uid(value: bytes, where: str) -> None:
    text = value.rstrip(b"\x00")
    if not text or len(text) > _UID_MAX:
        raise ValueError(f"{where}: UID of {len(text)} octets (1-64, PS3.5 §9.1)")
    if not all(c in b"0123456789." for c in text):
        raise ValueError(f"{where}: UID with characters other than digits and '.'")


def _user_information(data: bytes) -> None:
    seen: set[int] = set()
    for sub, value in _items(data, "User Information"):
        if sub == 0x51:
            if len(value) != 4:
                raise ValueError("Maximum Length sub-item is not 4 octets (PS3.8 D.1)")
        elif sub == 0x52:
            _uid(value, "Implementation Class UID")
        elif sub == 0x55:
            if not 1 <= len(value) <= 16:
                raise ValueError("Implementation Version Name of more than 16 octets (PS3.7 D.3.3.2)")
        elif sub == 0x53:
            if len(value) != 4:
                raise ValueError("Asynchronous Operations Window sub-item is not 4 octets (PS3.7 D.3.3.3)")
        elif sub == 0x54:
            if len(value) < 4:
                raise ValueError("SCP/SCU Role Selection sub-item too short (PS3.7 D.3.3.4)")
            n = struct.unpack(">H", value[:2])[0]
            if 2 + n + 2 != len(value) or value[-2] > 1 or value[-1] > 1:
                raise ValueError("SCP/SCU Role Selection sub-item is malformed (PS3.7 D.3.3.4)")
            _uid(value[2:2 + n], "Role Selection SOP Class UID")
        elif sub == 0x56:
            if len(value) < 2 or 2 + struct.unpack(">H", value[:2])[0] > len(value):
                raise ValueError("SOP Class Extended Negotiation sub-item is malformed (PS3.7 D.3.3.5)")
            _uid(value[2:2 + struct.unpack(">H", value[:2])[0]], "Extended Negotiation SOP Class UID")
        elif sub == 0x57:
            _common_extended(value)
        elif sub == 0x58:
            _user_identity(value)
        else:
            raise ValueError(f"User Information sub-item 0x{sub:02x} is not allowed in an A-ASSOCIATE-RQ")
        if sub in (0x51, 0x52, 0x53, 0x55, 0x58) and sub in seen:
            raise ValueError(f"User Information sub-item 0x{sub:02x} appears twice")
        seen.add(sub)
    if 0x51 not in seen or 0x52 not in seen:
        raise ValueError("User Information lacks Maximum Length or Implementation Class UID (PS3.7 D.3.3)")


def _common_extended(value: bytes) -> None:
    """PS3.7 D.3.3.6: SOP class UID, service class UID, related general SOP class UIDs."""
    pos = 0
    for what in ("SOP Class", "Service Class"):
        if pos + 2 > len(value):
            raise ValueError("SOP Class Common Extended Negotiation sub-item is truncated (PS3.7 D.3.3.6)")
        n = struct.unpack(">H", value[pos:pos + 2])[0]
        _uid(value[pos + 2:pos + 2 + n], f"Common Extended Negotiation {what} UID")
        if pos + 2 + n > len(value):
            raise ValueError("SOP Class Common Extended Negotiation sub-item is truncated (PS3.7 D.3.3.6)")
        pos += 2 + n
    if pos + 2 > len(value):
        raise ValueError("SOP Class Common Extended Negotiation sub-item is truncated (PS3.7 D.3.3.6)")
    total = struct.unpack(">H", value[pos:pos + 2])[0]
    related, pos = value[pos + 2:pos + 2 + total], pos + 2 + total
    if pos != len(value):
        raise ValueError("SOP Class Common Extended Negotiation sub-item lengths disagree (PS3.7 D.3.3.6)")
    rp = 0
    while rp < len(related):
        if rp + 2 > len(related):
            raise ValueError("Related General SOP Class list is truncated (PS3.7 D.3.3.6)")
        n = struct.unpack(">H", related[rp:rp + 2])[0]
        if rp + 2 + n > len(related):
            raise ValueError("Related General SOP Class list is truncated (PS3.7 D.3.3.6)")
        _uid(related[rp + 2:rp + 2 + n], "Related General SOP Class UID")
        rp += 2 + n


def _user_identity(value: bytes) -> None:
    """PS3.7 D.3.3.7.1: type 1-5, positive-response flag 0/1, primary field, secondary only for type 2."""
    if len(value) < 6:
        raise ValueError("User Identity sub-item too short (PS3.7 D.3.3.7)")
    uid_type, flag = value[0], value[1]
    if uid_type not in (1, 2, 3, 4, 5):
        raise ValueError(f"User Identity type {uid_type} is not defined (PS3.7 D.3.3.7: 1-5)")
    if flag > 1:
        raise ValueError(f"User Identity positive-response-requested is {flag}, not 0 or 1")
    n = struct.unpack(">H", value[2:4])[0]
    if n == 0 or 4 + n + 2 > len(value):
        raise ValueError("User Identity primary field length is 0 or runs past the sub-item")
    m = struct.unpack(">H", value[4 + n:6 + n])[0]
    if 6 + n + m != len(value):
        raise ValueError("User Identity secondary field length disagrees with the sub-item length")
    if uid_type == 2 and m == 0:
        raise ValueError("User Identity type 2 without a passcode (PS3.7 D.3.3.7.1)")


def check_associate_rq(body: bytes) -> str | None:
    """What is wrong with an A-ASSOCIATE-RQ body (the PDU without its 6-octet header), or None."""
    try:
        _check_structure(body)
    except ValueError as exc:
        return str(exc)
    # Second gate: what pynetdicom's reactor will do with it (decode, then the primitive it negotiates).
    try:
        from pynetdicom.pdu import A_ASSOCIATE_RQ

        pdu = A_ASSOCIATE_RQ()
        pdu.decode(struct.pack(">BBI", 1, 0, len(body)) + body)
        pdu.to_primitive()
    except Exception as exc:  # anything it raises would have killed its reactor thread
        return f"not decodable by the association layer: {type(exc).__name__}: {str(exc)[:160]}"
    return None


def _check_structure(body: bytes) -> None:
    """PS3.8 §9.3.2: fixed part (68 octets), then items; PS3.8 §9.3.2.2 presentation contexts."""
    if len(body) < 68:
        raise ValueError(f"A-ASSOCIATE-RQ of {len(body)} octets is shorter than its fixed part (68)")
    if struct.unpack(">H", body[:2])[0] & 0x0001 == 0:
        raise ValueError("protocol version bit 0 is not set (PS3.8 §9.3.2)")
    for name, raw in (("Called", body[4:20]), ("Calling", body[20:36])):
        if any(c < 0x20 or c > 0x7E or c == 0x5C for c in raw.strip(b" \x00")):
            raise ValueError(f"{name} AE title has characters outside the Default Character Repertoire")
    app = pcs = user = 0
    ids: set[int] = set()
    for item_type, value in _items(body[68:], "A-ASSOCIATE-RQ"):
        if item_type == 0x10:
            app += 1
            _uid(value, "Application Context Name")
        elif item_type == 0x20:
            pcs += 1
            if len(value) < 4:
                raise ValueError("Presentation Context item too short (PS3.8 §9.3.2.2)")
            pc_id = value[0]
            if pc_id % 2 == 0:
                raise ValueError(f"presentation context id {pc_id} is even (PS3.8 §9.3.2.2: odd 1-255)")
            if pc_id in ids:
                raise ValueError(f"presentation context id {pc_id} is used twice")
            ids.add(pc_id)
            subs = _items(value[4:], f"Presentation Context {pc_id}")
            abstract = [v for t, v in subs if t == 0x30]
            transfer = [v for t, v in subs if t == 0x40]
            if len(abstract) != 1 or not transfer or len(abstract) + len(transfer) != len(subs):
                raise ValueError(f"presentation context {pc_id} needs one abstract syntax and transfer syntaxes")
            _uid(abstract[0], f"context {pc_id} abstract syntax")
            for ts in transfer:
                _uid(ts, f"context {pc_id} transfer syntax")
        elif item_type == 0x50:
            user += 1
            _user_information(value)
        else:
            raise ValueError(f"item type 0x{item_type:02x} is not allowed in an A-ASSOCIATE-RQ")
    if app != 1 or user != 1 or pcs == 0 or pcs > 128:
        raise ValueError(f"A-ASSOCIATE-RQ has {app} application context, {pcs} presentation context and "
                         f"{user} user information items (PS3.8 §9.3.2: 1, 1-128, 1)")


def ae_titles(body: bytes) -> tuple[str, str]:
    """Calling and called AE titles of an RQ body, best effort, for the record of a refused one."""
    def text(raw: bytes) -> str:
        return raw.decode("ascii", errors="replace").strip(" \x00")[:16]
    return (text(body[20:36]), text(body[4:20])) if len(body) >= 36 else ("", "")
