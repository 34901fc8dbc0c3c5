"""TLS on the wire: build ClientHellos, parse ClientHellos and server flights (no OpenSSL involved).

Implements the record layer and handshake framing of RFC 5246 §6.2 / §7.4 and RFC 8446 §4-5, the
SSL 2.0 CLIENT-HELLO / SERVER-HELLO (draft-hickman-netscape-ssl-00 §2.6, RFC 6101 app. E.2), and the
extensions a scanner needs: server_name (RFC 6066 §3), supported_groups (RFC 8422 §5.1.1, RFC 7919),
ec_point_formats, signature_algorithms (RFC 8446 §4.2.3), ALPN (RFC 7301), renegotiation_info
(RFC 5746), extended_master_secret (RFC 7627), encrypt_then_mac (RFC 7366), supported_versions and
key_share (RFC 8446 §4.2.1, §4.2.8), HelloRetryRequest (RFC 8446 §4.1.4).

Every parser is total: garbage or truncated input raises ``ValueError`` and nothing else.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from dcsaudit.rules.tls_suites import (
    VERSION_NAMES,
    alert_name,
    group_name,
    signature_name,
    suite_name,
)

CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
CT_HEARTBEAT = 24  # RFC 6520 §3

HT_CLIENT_HELLO = 1
HT_SERVER_HELLO = 2
HT_NEW_SESSION_TICKET = 4
HT_ENCRYPTED_EXTENSIONS = 8
HT_CERTIFICATE = 11
HT_SERVER_KEY_EXCHANGE = 12
HT_CERTIFICATE_REQUEST = 13
HT_SERVER_HELLO_DONE = 14
HT_CERTIFICATE_VERIFY = 15
HT_FINISHED = 20

EXT_SERVER_NAME = 0
EXT_STATUS_REQUEST = 5
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_HEARTBEAT = 15
EXT_ALPN = 16
EXT_ENCRYPT_THEN_MAC = 22
EXT_EXTENDED_MASTER_SECRET = 23
EXT_SESSION_TICKET = 35
EXT_SUPPORTED_VERSIONS = 43
EXT_PSK_KEY_EXCHANGE_MODES = 45
EXT_SIGNATURE_ALGORITHMS_CERT = 50
EXT_KEY_SHARE = 51
EXT_RENEGOTIATION_INFO = 0xFF01

# RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest.
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
# RFC 8446 §4.1.3: downgrade sentinels in the last 8 bytes of ServerHello.random.
DOWNGRADE_TLS12 = bytes.fromhex("444F574E47524401")
DOWNGRADE_TLS11 = bytes.fromhex("444F574E47524400")


class _Reader:
    """Bounds-checked reader: every short read is a ValueError (hostile input is normal input)."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError(f"truncated: wanted {n} bytes at offset {self.pos} of {len(self.buf)}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u24(self) -> int:
        b = self.take(3)
        return (b[0] << 16) | (b[1] << 8) | b[2]

    def vec8(self) -> bytes:
        return self.take(self.u8())

    def vec16(self) -> bytes:
        return self.take(self.u16())

    def vec24(self) -> bytes:
        return self.take(self.u24())

    def rest(self) -> bytes:
        return self.take(len(self.buf) - self.pos)

    @property
    def left(self) -> int:
        return len(self.buf) - self.pos


def _u16_list(data: bytes) -> list[int]:
    if len(data) % 2:
        raise ValueError("odd-length list of 16-bit values")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def _parse_extensions(r: _Reader) -> list[tuple[int, bytes]]:
    if r.left == 0:
        return []
    block = _Reader(r.vec16())
    out: list[tuple[int, bytes]] = []
    while block.left:
        et = block.u16()
        out.append((et, block.vec16()))
    return out


def version_name(code: int) -> str:
    return VERSION_NAMES.get(code, f"0x{code:04X}")


# --------------------------------------------------------------------------------------------------
# ClientHello parsing (used by `dcsaudit listen` to describe what a product offers as TLS client)


@dataclass(frozen=True)
class ClientHelloInfo:
    """What a TLS client offered, in its order. Names are IANA names."""

    legacy_version: str
    versions: tuple[str, ...]  # supported_versions if present, else the legacy version
    cipher_suites: tuple[str, ...]
    cipher_suite_codes: tuple[int, ...]
    compression_methods: tuple[int, ...]
    groups: tuple[str, ...] = ()
    signature_algorithms: tuple[str, ...] = ()
    key_share_groups: tuple[str, ...] = ()
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    extensions: tuple[int, ...] = ()
    renegotiation_info: bool = False
    extended_master_secret: bool = False
    encrypt_then_mac: bool = False
    sslv2_format: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "legacy_version": self.legacy_version, "versions": list(self.versions),
            "cipher_suites": list(self.cipher_suites), "groups": list(self.groups),
            "signature_algorithms": list(self.signature_algorithms),
            "key_share_groups": list(self.key_share_groups), "sni": self.sni, "alpn": list(self.alpn),
            "extensions": list(self.extensions), "renegotiation_info": self.renegotiation_info,
            "extended_master_secret": self.extended_master_secret,
            "encrypt_then_mac": self.encrypt_then_mac, "sslv2_format": self.sslv2_format,
        }


def _handshake_payload(data: bytes) -> bytes:
    """Concatenate the handshake records at the start of ``data`` (a ClientHello may span records)."""
    r = _Reader(data)
    out = bytearray()
    while r.left >= 5:
        ct = r.u8()
        r.u16()
        body = r.take(r.u16()) if r.left >= 2 else b""
        if ct != CT_HANDSHAKE:
            if out:
                break
            raise ValueError(f"record type {ct} is not a handshake")
        out += body
        if len(out) >= 4 and len(out) >= 4 + int.from_bytes(out[1:4], "big"):
            break
    if not out:
        raise ValueError("no handshake record")
    return bytes(out)


def _parse_sslv2_client_hello(data: bytes) -> ClientHelloInfo:
    # SSL 2.0 record: 2-byte header with the high bit set, then msg type 1 (CLIENT-HELLO).
    r = _Reader(data)
    length = r.u16() & 0x7FFF
    body = _Reader(r.take(length))
    if body.u8() != 1:
        raise ValueError("SSLv2 record is not a CLIENT-HELLO")
    version = body.u16()
    cs_len, sid_len, ch_len = body.u16(), body.u16(), body.u16()
    specs = body.take(cs_len)
    body.take(sid_len)
    body.take(ch_len)
    if cs_len % 3:
        raise ValueError("SSLv2 cipher spec list not a multiple of 3")
    codes = [int.from_bytes(specs[i:i + 3], "big") for i in range(0, cs_len, 3)]
    # 3-byte specs 0x00XXYY are TLS suites offered in an SSLv2-compatible hello.
    codes = [c & 0xFFFF if c >> 16 == 0 else c for c in codes]
    return ClientHelloInfo(
        legacy_version=version_name(version), versions=(version_name(version),),
        cipher_suites=tuple(suite_name(c) for c in codes), cipher_suite_codes=tuple(codes),
        compression_methods=(0,), sslv2_format=True,
    )


def parse_client_hello(record: bytes) -> ClientHelloInfo:
    """Parse the first ClientHello in ``record`` (TLS records, or an SSLv2-format hello).

    Raises ``ValueError`` (only) for anything that is not a well-formed ClientHello.
    """
    try:
        return _parse_client_hello(bytes(record))
    except ValueError:
        raise
    except Exception as exc:  # any other surprise on hostile input is still "not a ClientHello"
        raise ValueError(f"not a ClientHello: {type(exc).__name__}") from None


def _parse_client_hello(data: bytes) -> ClientHelloInfo:
    if len(data) < 5:
        raise ValueError("too short for a TLS record")
    if data[0] & 0x80 and data[2] == 1:
        return _parse_sslv2_client_hello(data)
    payload = _Reader(_handshake_payload(data))
    if payload.u8() != HT_CLIENT_HELLO:
        raise ValueError("handshake message is not a ClientHello")
    r = _Reader(payload.vec24())
    legacy = r.u16()
    r.take(32)
    r.vec8()
    codes = _u16_list(r.vec16())
    compression = tuple(r.vec8())
    exts = _parse_extensions(r)
    versions: tuple[str, ...] = (version_name(legacy),)
    groups: tuple[str, ...] = ()
    sigalgs: tuple[str, ...] = ()
    shares: list[str] = []
    sni: str | None = None
    alpn: list[str] = []
    for et, ed in exts:
        er = _Reader(ed)
        if et == EXT_SUPPORTED_VERSIONS:
            versions = tuple(version_name(v) for v in _u16_list(er.vec8()) if (v & 0x0F0F) != 0x0A0A)
        elif et == EXT_SUPPORTED_GROUPS:
            groups = tuple(group_name(g) for g in _u16_list(er.vec16()) if (g & 0x0F0F) != 0x0A0A)
        elif et == EXT_SIGNATURE_ALGORITHMS:
            sigalgs = tuple(signature_name(s) for s in _u16_list(er.vec16()))
        elif et == EXT_KEY_SHARE:
            ks = _Reader(er.vec16())
            while ks.left:
                g = ks.u16()
                ks.vec16()
                if (g & 0x0F0F) != 0x0A0A:
                    shares.append(group_name(g))
        elif et == EXT_SERVER_NAME and ed:
            names = _Reader(er.vec16())
            while names.left:
                kind = names.u8()
                value = names.vec16()
                if kind == 0:
                    sni = value.decode("ascii", errors="replace")
        elif et == EXT_ALPN:
            protos = _Reader(er.vec16())
            while protos.left:
                alpn.append(protos.vec8().decode("ascii", errors="replace"))
    ext_types = tuple(et for et, _ in exts)
    return ClientHelloInfo(
        legacy_version=version_name(legacy), versions=versions,
        cipher_suites=tuple(suite_name(c) for c in codes if (c & 0x0F0F) != 0x0A0A),
        cipher_suite_codes=tuple(codes), compression_methods=compression, groups=groups,
        signature_algorithms=sigalgs, key_share_groups=tuple(shares), sni=sni, alpn=tuple(alpn),
        extensions=ext_types,
        renegotiation_info=EXT_RENEGOTIATION_INFO in ext_types or 0x00FF in codes,
        extended_master_secret=EXT_EXTENDED_MASTER_SECRET in ext_types,
        encrypt_then_mac=EXT_ENCRYPT_THEN_MAC in ext_types,
    )


# --------------------------------------------------------------------------------------------------
# ClientHello building (the scanner's side)


def _ext(et: int, data: bytes) -> bytes:
    return struct.pack(">HH", et, len(data)) + data


def _vec16(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def _u16s(values: list[int] | tuple[int, ...]) -> bytes:
    return b"".join(struct.pack(">H", v) for v in values)


@dataclass
class HelloSpec:
    """What one probing ClientHello offers. ``version`` is the highest offered (wire code)."""

    version: int
    suites: list[int]
    groups: list[int] = field(default_factory=list)
    signature_algorithms: list[int] = field(default_factory=list)
    sni: str | None = None
    alpn: list[str] = field(default_factory=list)
    key_shares: list[tuple[int, bytes]] = field(default_factory=list)
    supported_versions: list[int] | None = None  # None: derived from version (TLS 1.3 only)
    extensions: bool = True  # SSLv3 probes send none
    fallback_scsv: bool = False
    heartbeat: bool = False
    deflate: bool = False  # also offer DEFLATE compression (RFC 3749) to see whether it is accepted


def build_client_hello(spec: HelloSpec, random: bytes | None = None) -> bytes:
    """One TLS record holding a ClientHello as ``spec`` describes (RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2)."""
    tls13 = spec.version >= 0x0304
    legacy = min(spec.version, 0x0303)
    suites = list(spec.suites)
    if spec.fallback_scsv:
        suites.append(0x5600)
    ext = bytearray()
    if spec.extensions:
        if spec.sni:
            name = spec.sni.encode("ascii")
            ext += _ext(EXT_SERVER_NAME, _vec16(b"\x00" + _vec16(name)))
        if spec.groups:
            ext += _ext(EXT_SUPPORTED_GROUPS, _vec16(_u16s(spec.groups)))
            ext += _ext(EXT_EC_POINT_FORMATS, b"\x01\x00")
        if spec.signature_algorithms and spec.version >= 0x0303:
            ext += _ext(EXT_SIGNATURE_ALGORITHMS, _vec16(_u16s(spec.signature_algorithms)))
        if spec.alpn:
            protos = b"".join(bytes([len(p)]) + p.encode("ascii") for p in spec.alpn)
            ext += _ext(EXT_ALPN, _vec16(protos))
        ext += _ext(EXT_ENCRYPT_THEN_MAC, b"")
        ext += _ext(EXT_EXTENDED_MASTER_SECRET, b"")
        ext += _ext(EXT_SESSION_TICKET, b"")
        if spec.heartbeat:
            ext += _ext(EXT_HEARTBEAT, b"\x01")
        versions = spec.supported_versions
        if versions is None and tls13:
            versions = [0x0304]
        if versions:
            ext += _ext(EXT_SUPPORTED_VERSIONS, bytes([2 * len(versions)]) + _u16s(versions))
        if tls13 or (versions and max(versions) >= 0x0304):
            ext += _ext(EXT_PSK_KEY_EXCHANGE_MODES, b"\x01\x01")
            shares = b"".join(struct.pack(">HH", g, len(k)) + k for g, k in spec.key_shares)
            ext += _ext(EXT_KEY_SHARE, _vec16(shares))
        ext += _ext(EXT_RENEGOTIATION_INFO, b"\x00")
    body = bytearray()
    body += struct.pack(">H", legacy)
    body += random if random is not None else os.urandom(32)
    sid = os.urandom(32) if (tls13 or (spec.supported_versions and max(spec.supported_versions) >= 0x0304)) else b""
    body += bytes([len(sid)]) + sid
    body += _vec16(_u16s(suites))
    body += b"\x02\x01\x00" if spec.deflate else b"\x01\x00"  # compression methods
    if spec.extensions:
        body += _vec16(bytes(ext))
    hs = bytes([HT_CLIENT_HELLO]) + len(body).to_bytes(3, "big") + bytes(body)
    record_version = 0x0300 if spec.version == 0x0300 else 0x0301
    return struct.pack(">BHH", CT_HANDSHAKE, record_version, len(hs)) + hs


def build_sslv2_client_hello(specs: list[int]) -> bytes:
    """SSL 2.0 CLIENT-HELLO offering ``specs`` (3-byte cipher kinds)."""
    challenge = os.urandom(16)
    cs = b"".join(s.to_bytes(3, "big") for s in specs)
    body = bytes([1]) + struct.pack(">HHHH", 0x0002, len(cs), 0, len(challenge)) + cs + challenge
    return struct.pack(">H", 0x8000 | len(body)) + body


# --------------------------------------------------------------------------------------------------
# Server flight parsing


@dataclass
class ServerHello:
    version: int  # negotiated: supported_versions if present, else legacy_version
    legacy_version: int
    random: bytes
    cipher_suite: int
    compression: int
    extensions: dict[int, bytes]
    hello_retry: bool = False
    raw: bytes = b""  # the handshake message with its 4-byte header (TLS 1.3 transcript)

    @property
    def suite_name(self) -> str:
        return suite_name(self.cipher_suite)

    @property
    def selected_group(self) -> int | None:
        data = self.extensions.get(EXT_KEY_SHARE)
        if data is None or len(data) < 2:
            return None
        return int.from_bytes(data[:2], "big")

    @property
    def key_share(self) -> bytes | None:
        data = self.extensions.get(EXT_KEY_SHARE)
        if data is None or self.hello_retry or len(data) < 4:
            return None
        return data[4:4 + int.from_bytes(data[2:4], "big")]


def parse_server_hello(msg: bytes) -> ServerHello:
    """Parse a ServerHello body (without the 4-byte handshake header)."""
    r = _Reader(msg)
    legacy = r.u16()
    random = r.take(32)
    r.vec8()
    suite = r.u16()
    compression = r.u8()
    exts = dict(_parse_extensions(r))
    version = legacy
    sv = exts.get(EXT_SUPPORTED_VERSIONS)
    if sv is not None and len(sv) == 2:
        version = int.from_bytes(sv, "big")
    return ServerHello(version, legacy, random, suite, compression, exts, hello_retry=random == HRR_RANDOM)


@dataclass
class ServerKeyExchange:
    kind: str  # "ecdhe" | "dhe" | "unknown"
    group: int | None = None
    dh_bits: int | None = None
    signature_scheme: int | None = None  # TLS 1.2 only; TLS 1.0/1.1 use fixed MD5+SHA1 / SHA1


def parse_server_key_exchange(msg: bytes, suite_kx: str, version: int) -> ServerKeyExchange:
    """RFC 8422 §5.4 (ECDHE) and RFC 5246 §7.4.3 (DHE) ServerKeyExchange with its signature header."""
    r = _Reader(msg)
    kx = suite_kx.upper()
    if kx.startswith("ECDH"):
        if r.u8() != 3:
            return ServerKeyExchange("ecdhe")
        group = r.u16()
        r.vec8()
        scheme = r.u16() if version >= 0x0303 and r.left >= 2 else None
        return ServerKeyExchange("ecdhe", group=group, signature_scheme=scheme)
    if kx.startswith("DH"):
        p = r.vec16().lstrip(b"\x00")
        r.vec16()
        r.vec16()
        scheme = r.u16() if version >= 0x0303 and r.left >= 2 else None
        return ServerKeyExchange("dhe", dh_bits=len(p) * 8 if p else 0, signature_scheme=scheme)
    return ServerKeyExchange("unknown")


def parse_certificate_list(msg: bytes, tls13: bool) -> list[bytes]:
    """DER certificates of a Certificate message (RFC 5246 §7.4.2, RFC 8446 §4.4.2)."""
    r = _Reader(msg)
    if tls13:
        r.vec8()  # certificate_request_context
    lst = _Reader(r.vec24())
    certs: list[bytes] = []
    while lst.left:
        certs.append(lst.vec24())
        if tls13:
            lst.vec16()  # per-certificate extensions
    return certs


@dataclass
class Alert:
    level: int
    description: int

    @property
    def name(self) -> str:
        return alert_name(self.description)


class HandshakeBuffer:
    """Reassembles handshake messages that span records (RFC 5246 §6.2.1 fragmentation)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes, bytes]]:
        """Add record payload; return complete (type, body, raw message) triples."""
        self.buf += data
        out: list[tuple[int, bytes, bytes]] = []
        while len(self.buf) >= 4:
            n = int.from_bytes(self.buf[1:4], "big")
            if n > 1 << 18:
                raise ValueError("handshake message larger than 256 KiB")
            if len(self.buf) < 4 + n:
                break
            raw = bytes(self.buf[:4 + n])
            del self.buf[:4 + n]
            out.append((raw[0], raw[4:], raw))
        return out


def split_records(buf: bytearray) -> list[tuple[int, int, bytes]]:
    """Remove complete TLS records from ``buf``; return (content type, version, payload)."""
    out: list[tuple[int, int, bytes]] = []
    while len(buf) >= 5:
        ct = buf[0]
        if ct not in (CT_CHANGE_CIPHER_SPEC, CT_ALERT, CT_HANDSHAKE, CT_APPLICATION_DATA, CT_HEARTBEAT):
            raise ValueError(f"not a TLS record (content type {ct})")
        ver = int.from_bytes(buf[1:3], "big")
        if ver >> 8 != 3:
            raise ValueError(f"not a TLS record (version 0x{ver:04X})")
        n = int.from_bytes(buf[3:5], "big")
        if n > (1 << 14) + 2048:
            raise ValueError("record longer than RFC 8446 §5.2 allows")
        if len(buf) < 5 + n:
            break
        out.append((ct, ver, bytes(buf[5:5 + n])))
        del buf[:5 + n]
    return out


def parse_sslv2_server_hello(data: bytes) -> tuple[int, list[int], bytes] | None:
    """SSL 2.0 SERVER-HELLO: (version, cipher kinds, certificate DER), or None if not one."""
    if len(data) < 2 or not data[0] & 0x80:
        return None
    r = _Reader(data)
    length = r.u16() & 0x7FFF
    body = _Reader(r.take(length))
    if body.u8() != 4:
        return None
    body.u8()  # session id hit
    body.u8()  # certificate type
    version = body.u16()
    cert_len, cs_len, cid_len = body.u16(), body.u16(), body.u16()
    cert = body.take(cert_len)
    specs = body.take(cs_len)
    body.take(cid_len)
    return version, [int.from_bytes(specs[i:i + 3], "big") for i in range(0, len(specs) - 2, 3)], cert


# --------------------------------------------------------------------------------------------------
# Records for the known-vulnerability tests (vulns_raw.py): sent in place of the rest of a handshake


def record(content_type: int, version: int, payload: bytes) -> bytes:
    """One plaintext TLS record (RFC 5246 §6.2.1); ``version`` is the record-layer version code."""
    return struct.pack(">BHH", content_type, version, len(payload)) + payload


def heartbeat_request(version: int, payload: bytes) -> bytes:
    """A HeartbeatRequest record (RFC 6520 §4) as sslyze builds it: payload_length = len(payload) and no
    padding, so a request whose payload fills the record claims more than the record carries once the
    16 mandatory padding bytes are counted (the over-long request CVE-2014-0160 servers echo anyway)."""
    return record(CT_HEARTBEAT, version, b"\x01" + struct.pack(">H", len(payload)) + payload)


def heartbeat_request_padded(version: int, payload: bytes) -> bytes:
    """A well-formed HeartbeatRequest (RFC 6520 §4: payload, then at least 16 bytes of padding), which any
    server that implements heartbeats answers with a HeartbeatResponse echoing ``payload``."""
    return record(CT_HEARTBEAT, version, b"\x01" + struct.pack(">H", len(payload)) + payload + bytes(16))
