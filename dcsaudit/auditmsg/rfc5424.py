"""A strict parser for the RFC 5424 syslog message format (RFC 5424 §6).

``SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG]`` with
``HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID``.

The parser works on bytes (a hostile sender may send anything) and never raises: every departure from
the grammar becomes an error string citing the section, and parsing goes on as far as it sensibly can so
that the report can still say which event the message carried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NILVALUE = b"-"
BOM = b"\xef\xbb\xbf"

# RFC 5424 §6.2.3: FULL-DATE "T" FULL-TIME, TIME-SECFRAC at most 6 digits, TIME-OFFSET "Z" or +/-hh:mm.
_TIMESTAMP = re.compile(
    rb"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,6})?"
    rb"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_PRINTUSASCII = re.compile(rb"^[\x21-\x7e]+$")
# §6.3.3: SD-NAME = 1*32PRINTUSASCII except '=', SP, ']', '"'.
_SD_NAME = re.compile(rb'^[\x21-\x7e]{1,32}$')
_SD_NAME_FORBIDDEN = frozenset(b'= ]"')


@dataclass
class SyslogHeader:
    """What was found in one message; ``errors`` is empty when the header is well formed."""

    pri: int | None = None
    version: int | None = None
    timestamp: str | None = None
    hostname: str | None = None
    app_name: str | None = None
    procid: str | None = None
    msgid: str | None = None
    structured_data: str | None = None
    sd_ids: list[str] = field(default_factory=list)
    msg: bytes = b""
    bom: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def facility(self) -> int | None:
        return None if self.pri is None else self.pri // 8

    @property
    def severity(self) -> int | None:
        return None if self.pri is None else self.pri % 8


def _field(data: bytes, pos: int) -> tuple[bytes, int]:
    """The next SP-delimited header field, and the position after its SP (or len when none follows)."""
    end = data.find(b" ", pos)
    if end < 0:
        return data[pos:], len(data)
    return data[pos:end], end + 1


def _header_field(raw: bytes, name: str, max_len: int, errors: list[str]) -> str | None:
    if raw == NILVALUE:
        return None
    if not raw:
        errors.append(f"RFC 5424 §6.2: {name} is empty (must be a value or NILVALUE '-')")
        return None
    if len(raw) > max_len:
        errors.append(f"RFC 5424 §6.2: {name} is {len(raw)} octets, more than {max_len}")
    if not _PRINTUSASCII.match(raw):
        errors.append(f"RFC 5424 §6.2: {name} has characters outside printable US-ASCII")
    return raw[:max_len].decode("ascii", errors="replace")


def _structured_data(data: bytes, pos: int, errors: list[str], ids: list[str]) -> int:
    """Parse STRUCTURED-DATA (§6.3) from ``pos``; return the position just after it."""
    if data[pos:pos + 1] == NILVALUE and (pos + 1 == len(data) or data[pos + 1:pos + 2] == b" "):
        return pos + 1
    if data[pos:pos + 1] != b"[":
        errors.append("RFC 5424 §6.3: STRUCTURED-DATA is neither NILVALUE nor an SD-ELEMENT '[...]'")
        # Resynchronise at the next space so that MSG can still be looked at.
        nxt = data.find(b" ", pos)
        return len(data) if nxt < 0 else nxt
    while data[pos:pos + 1] == b"[":
        pos += 1
        end = pos
        while end < len(data) and data[end] not in b" ]":
            end += 1
        sd_id = data[pos:end]
        if not _SD_NAME.match(sd_id) or any(c in _SD_NAME_FORBIDDEN for c in sd_id):
            errors.append("RFC 5424 §6.3.2: malformed SD-ID")
        else:
            ids.append(sd_id.decode("ascii"))
        pos = end
        while pos < len(data) and data[pos:pos + 1] == b" ":
            pos += 1
            eq = data.find(b"=", pos)
            if eq < 0 or eq - pos > 32 or eq == pos:
                errors.append("RFC 5424 §6.3.3: malformed SD-PARAM name")
                return len(data)
            if data[eq + 1:eq + 2] != b'"':
                errors.append("RFC 5424 §6.3.3: PARAM-VALUE is not quoted")
                return len(data)
            i = eq + 2
            # PARAM-VALUE: '"', '\' and ']' must be escaped with '\' (§6.3.3).
            while i < len(data):
                c = data[i]
                if c == 0x5C:
                    i += 2
                    continue
                if c == 0x22:
                    break
                if c == 0x5D:
                    errors.append("RFC 5424 §6.3.3: unescaped ']' in PARAM-VALUE")
                i += 1
            else:
                errors.append("RFC 5424 §6.3.3: unterminated PARAM-VALUE")
                return len(data)
            pos = i + 1
        if data[pos:pos + 1] != b"]":
            errors.append("RFC 5424 §6.3.1: SD-ELEMENT not closed by ']'")
            nxt = data.find(b" ", pos)
            return len(data) if nxt < 0 else nxt
        pos += 1
    return pos


def parse(data: bytes) -> SyslogHeader:
    """Parse one RFC 5424 message (without any transport framing)."""
    h = SyslogHeader()
    err = h.errors
    m = re.match(rb"^<(\d{1,3})>", data)
    if m is None:
        err.append("RFC 5424 §6.2.1: no PRI '<n>' at the start of the message")
        # Maybe an RFC 3164 message or raw XML: keep everything as MSG so the body can still be looked at.
        h.msg = data
        if h.msg.startswith(BOM):
            h.bom, h.msg = True, h.msg[3:]
        return h
    prival = m.group(1)
    if (len(prival) > 1 and prival.startswith(b"0")) or int(prival) > 191:
        err.append(f"RFC 5424 §6.2.1: PRIVAL {prival.decode()} is out of range or has a leading zero")
    h.pri = int(prival)
    pos = m.end()
    vm = re.match(rb"([1-9]\d{0,2}) ", data[pos:])
    if vm is None:
        err.append("RFC 5424 §6.2.2: no VERSION after PRI (an RFC 3164 message?)")
        h.msg = data[pos:]
        return h
    h.version = int(vm.group(1))
    if h.version != 1:
        err.append(f"RFC 5424 §6.2.2: VERSION is {h.version}, expected 1")
    pos += vm.end()
    raw_ts, pos = _field(data, pos)
    if raw_ts != NILVALUE:
        h.timestamp = raw_ts[:64].decode("ascii", errors="replace")
        if not _TIMESTAMP.match(raw_ts):
            err.append("RFC 5424 §6.2.3: TIMESTAMP is not RFC 3339 with time zone and at most 6 fractional digits")
    for name, max_len, attr in (("HOSTNAME", 255, "hostname"), ("APP-NAME", 48, "app_name"),
                                ("PROCID", 128, "procid"), ("MSGID", 32, "msgid")):
        if pos >= len(data):
            err.append(f"RFC 5424 §6: message ends before {name}")
            return h
        raw, pos = _field(data, pos)
        setattr(h, attr, _header_field(raw, name, max_len, err))
    if pos >= len(data):
        err.append("RFC 5424 §6: message ends before STRUCTURED-DATA")
        return h
    sd_start = pos
    pos = _structured_data(data, pos, err, h.sd_ids)
    sd = data[sd_start:pos]
    h.structured_data = None if sd == NILVALUE else sd[:1024].decode("utf-8", errors="replace")
    if pos < len(data):
        if data[pos:pos + 1] != b" ":
            err.append("RFC 5424 §6: no SP between STRUCTURED-DATA and MSG")
            h.msg = data[pos:]
        else:
            h.msg = data[pos + 1:]
    if h.msg.startswith(BOM):
        h.bom, h.msg = True, h.msg[3:]
    return h
