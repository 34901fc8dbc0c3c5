"""Just enough TLS 1.3 (RFC 8446 §7) to read the server's encrypted flight and finish without a certificate.

Why: in TLS 1.3 the certificate, the CertificateVerify signature scheme and the CertificateRequest are
encrypted. Deriving the handshake keys from our own ephemeral key share lets the raw engine see them
without OpenSSL, and finishing the handshake with an empty Certificate tells "client certificate
required" (the server answers with an alert, RFC 8446 §4.4.2.4) from "optional" (it sends
NewSessionTicket) without waiting out a timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

# suite -> (hash, key length, AEAD tag length)
TLS13_SUITES: dict[int, tuple[str, int, int]] = {
    0x1301: ("sha256", 16, 16), 0x1302: ("sha384", 32, 16), 0x1303: ("sha256", 32, 16),
    0x1304: ("sha256", 16, 16), 0x1305: ("sha256", 16, 8),
}
KEYED_GROUPS: tuple[int, ...] = (29, 23, 24, 25)  # groups we can compute a shared secret for


class _Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...
    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


def _curve(group: int) -> ec.EllipticCurve:
    return {23: ec.SECP256R1(), 24: ec.SECP384R1(), 25: ec.SECP521R1()}[group]


class KeyShare:
    """An ephemeral private key for one group (RFC 8446 §4.2.8.2 encodings)."""

    def __init__(self, group: int) -> None:
        self.group = group
        if group == 29:
            self._x = x25519.X25519PrivateKey.generate()
            self.public = self._x.public_key().public_bytes_raw()
        else:
            self._ec = ec.generate_private_key(_curve(group))
            from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
            self.public = self._ec.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def shared(self, peer: bytes) -> bytes:
        if self.group == 29:
            return self._x.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
        pub = ec.EllipticCurvePublicKey.from_encoded_point(_curve(self.group), peer)
        return self._ec.exchange(ec.ECDH(), pub)


def _hkdf_extract(hname: str, salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hname).digest()


def _hkdf_expand_label(hname: str, secret: bytes, label: str, context: bytes, length: int) -> bytes:
    full = b"tls13 " + label.encode()
    info = struct.pack(">H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hname).digest()
        out += block
        i += 1
    return out[:length]


@dataclass
class _Direction:
    aead: _Aead
    iv: bytes
    tag: int
    seq: int = 0

    def nonce(self) -> bytes:
        n = bytes(4) + self.seq.to_bytes(8, "big")
        self.seq += 1
        return bytes(a ^ b for a, b in zip(self.iv, n, strict=True))


class Tls13Session:
    """Key schedule of one connection; feed it transcript messages in order."""

    def __init__(self, suite: int, shared_secret: bytes, client_hello: bytes, server_hello: bytes) -> None:
        self.hname, self.keylen, self.taglen = TLS13_SUITES[suite]
        self.suite = suite
        self.hlen = hashlib.new(self.hname).digest_size
        self.transcript = bytearray(client_hello + server_hello)
        zero = bytes(self.hlen)
        early = _hkdf_extract(self.hname, zero, zero)
        derived = self._derive(early, "derived", b"")
        self.hs_secret = _hkdf_extract(self.hname, derived, shared_secret)
        th = self._hash()
        self.c_hs = _hkdf_expand_label(self.hname, self.hs_secret, "c hs traffic", th, self.hlen)
        self.s_hs = _hkdf_expand_label(self.hname, self.hs_secret, "s hs traffic", th, self.hlen)
        self.server = self._direction(self.s_hs)
        self.client = self._direction(self.c_hs)

    def _hash(self) -> bytes:
        return hashlib.new(self.hname, bytes(self.transcript)).digest()

    def _derive(self, secret: bytes, label: str, messages: bytes) -> bytes:
        return _hkdf_expand_label(self.hname, secret, label, hashlib.new(self.hname, messages).digest(), self.hlen)

    def _direction(self, secret: bytes) -> _Direction:
        key = _hkdf_expand_label(self.hname, secret, "key", b"", self.keylen)
        iv = _hkdf_expand_label(self.hname, secret, "iv", b"", 12)
        aead: _Aead
        if self.suite == 0x1303:
            aead = ChaCha20Poly1305(key)
        elif self.suite in (0x1304, 0x1305):
            aead = AESCCM(key, tag_length=self.taglen)
        else:
            aead = AESGCM(key)
        return _Direction(aead, iv, self.taglen)

    def add(self, message: bytes) -> None:
        self.transcript += message

    def decrypt(self, payload: bytes) -> tuple[int, bytes]:
        """Decrypt one application_data record from the server: (inner content type, content)."""
        d = self.server
        aad = struct.pack(">BHH", 23, 0x0303, len(payload))
        try:
            inner = d.aead.decrypt(d.nonce(), payload, aad)
        except Exception:
            raise ValueError("TLS 1.3 record did not decrypt") from None
        inner = inner.rstrip(b"\x00")
        if not inner:
            raise ValueError("TLS 1.3 record without content type")
        return inner[-1], inner[:-1]

    def encrypt(self, content_type: int, content: bytes) -> bytes:
        d = self.client
        plain = content + bytes([content_type])
        aad = struct.pack(">BHH", 23, 0x0303, len(plain) + d.tag)
        return aad + d.aead.encrypt(d.nonce(), plain, aad)

    def finish_without_certificate(self, certificate_requested: bool) -> bytes:
        """Records to send after the server Finished: [CCS], empty Certificate if asked, client Finished.

        Also switches the server direction to application traffic keys (RFC 8446 §7.1), so alerts and
        NewSessionTicket messages the server sends next can be read.
        """
        master = _hkdf_extract(self.hname, self._derive(self.hs_secret, "derived", b""), bytes(self.hlen))
        s_ap = _hkdf_expand_label(self.hname, master, "s ap traffic", self._hash(), self.hlen)
        out = bytearray(b"\x14\x03\x03\x00\x01\x01")  # middlebox-compat ChangeCipherSpec
        if certificate_requested:
            ctx_len = 0
            cert = bytes([11]) + (4).to_bytes(3, "big") + bytes([ctx_len]) + (0).to_bytes(3, "big")
            out += self.encrypt(22, cert)
            self.add(cert)
        fkey = _hkdf_expand_label(self.hname, self.c_hs, "finished", b"", self.hlen)
        verify = hmac.new(fkey, self._hash(), self.hname).digest()
        fin = bytes([20]) + len(verify).to_bytes(3, "big") + verify
        out += self.encrypt(22, fin)
        self.server = self._direction(s_ap)
        return bytes(out)
