"""The TLS registries of the rule book: cipher suites, supported groups, signature schemes, alerts.

The probes build and parse hellos with these code points; the profile rules (``tls_profiles``) and
the checks judge a suite by its attributes here (key exchange, authentication, encryption, MAC), so a
suite means the same thing everywhere.

Cipher suites come from ``dcsaudit/data/tls_cipher_suites.csv`` (the IANA "TLS Cipher Suites" registry
plus the SSLv2 kinds of RFC 6101 / draft-hickman); groups from the IANA "TLS Supported Groups"
registry (RFC 8422 §5.1.1, RFC 7919, RFC 8446 §4.2.7); signature schemes from RFC 8446 §4.2.3 and the
RFC 5246 §7.4.1.4.1 (hash, signature) pairs they replace; alerts from RFC 8446 §6.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

VERSION_CODES: dict[str, int] = {
    "SSLv3": 0x0300, "TLSv1.0": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304,
}
VERSION_NAMES: dict[int, str] = {v: k for k, v in VERSION_CODES.items()}

# Signalling values that are not suites (RFC 5746 §3.3, RFC 7507 §2).
TLS_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF
TLS_FALLBACK_SCSV = 0x5600


@dataclass(frozen=True)
class CipherSuite:
    code: int
    iana: str
    openssl: str
    protocol: str  # the oldest protocol that defines it: SSLv2, SSLv3, TLSv1.0.. TLSv1.3
    kx: str
    au: str
    enc: str
    bits: int
    mac: str

    @property
    def kx_family(self) -> str:
        """The key exchange without its export size: ``RSA(512)`` -> ``RSA``, ``DH(1024)`` -> ``DH``."""
        return _family(self.kx)

    @property
    def enc_family(self) -> str:
        """The cipher without its key size: ``AESGCM(128)`` -> ``AESGCM``, ``DES(40)`` -> ``DES``."""
        return _family(self.enc)

    @property
    def sslv2(self) -> bool:
        return self.code > 0xFFFF

    @property
    def tls13(self) -> bool:
        return self.protocol == "TLSv1.3"


def _family(column: str) -> str:
    return column.split("(", 1)[0]


@cache
def cipher_suites() -> dict[int, CipherSuite]:
    text = resources.files("dcsaudit").joinpath("data", "tls_cipher_suites.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    out: dict[int, CipherSuite] = {}
    for r in rows:
        out[int(r["code"], 16)] = CipherSuite(
            int(r["code"], 16), r["iana"], r["openssl"], r["protocol"], r["kx"], r["au"], r["enc"],
            int(r["bits"]), r["mac"],
        )
    return out


@cache
def suites_by_name() -> dict[str, CipherSuite]:
    return {s.iana: s for s in cipher_suites().values()}


def suite_name(code: int) -> str:
    if code == TLS_EMPTY_RENEGOTIATION_INFO_SCSV:
        return "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"
    if code == TLS_FALLBACK_SCSV:
        return "TLS_FALLBACK_SCSV"
    s = cipher_suites().get(code)
    if s is not None:
        return s.iana
    if (code & 0x0F0F) == 0x0A0A:  # RFC 8701 GREASE
        return f"GREASE_0x{code:04X}"
    return f"UNKNOWN_0x{code:04X}"


GROUPS: dict[int, str] = {
    1: "sect163k1", 2: "sect163r1", 3: "sect163r2", 4: "sect193r1", 5: "sect193r2", 6: "sect233k1",
    7: "sect233r1", 8: "sect239k1", 9: "sect283k1", 10: "sect283r1", 11: "sect409k1", 12: "sect409r1",
    13: "sect571k1", 14: "sect571r1", 15: "secp160k1", 16: "secp160r1", 17: "secp160r2", 18: "secp192k1",
    19: "secp192r1", 20: "secp224k1", 21: "secp224r1", 22: "secp256k1", 23: "secp256r1", 24: "secp384r1",
    25: "secp521r1", 26: "brainpoolP256r1", 27: "brainpoolP384r1", 28: "brainpoolP512r1", 29: "x25519",
    30: "x448", 31: "brainpoolP256r1tls13", 32: "brainpoolP384r1tls13", 33: "brainpoolP512r1tls13",
    256: "ffdhe2048", 257: "ffdhe3072", 258: "ffdhe4096", 259: "ffdhe6144", 260: "ffdhe8192",
    0x11EB: "SecP256r1MLKEM768", 0x11EC: "X25519MLKEM768", 0x11ED: "SecP384r1MLKEM1024",
    0x6399: "X25519Kyber768Draft00",
}
GROUP_CODES: dict[str, int] = {v: k for k, v in GROUPS.items()}
# Security strength in bits (RFC 9325 §4.5 asks >= 224-bit curves, B.13 asks >= 256).
GROUP_BITS: dict[str, int] = {
    **{n: int("".join(c for c in n[4:7] if c.isdigit()) or 0) for n in GROUPS.values() if n.startswith("sec")},
    "brainpoolP256r1": 256, "brainpoolP384r1": 384, "brainpoolP512r1": 512,
    "brainpoolP256r1tls13": 256, "brainpoolP384r1tls13": 384, "brainpoolP512r1tls13": 512,
    "x25519": 256, "x448": 448, "ffdhe2048": 2048, "ffdhe3072": 3072, "ffdhe4096": 4096,
    "ffdhe6144": 6144, "ffdhe8192": 8192, "SecP256r1MLKEM768": 256, "X25519MLKEM768": 256,
    "SecP384r1MLKEM1024": 384, "X25519Kyber768Draft00": 256,
}
# Groups a TLS 1.2 ServerKeyExchange can name (RFC 8422 §5.4): the EC ones, not FFDHE.
EC_GROUPS: tuple[int, ...] = tuple(c for c in GROUPS if c < 256 and c != 0)
TLS13_GROUPS: tuple[int, ...] = (29, 23, 24, 25, 30, 26, 27, 28, 31, 32, 33, 256, 257, 258, 259, 260,
                                 0x11EC, 0x11EB, 0x11ED, 0x6399)

SIGNATURE_SCHEMES: dict[int, str] = {
    0x0401: "rsa_pkcs1_sha256", 0x0501: "rsa_pkcs1_sha384", 0x0601: "rsa_pkcs1_sha512",
    0x0403: "ecdsa_secp256r1_sha256", 0x0503: "ecdsa_secp384r1_sha384", 0x0603: "ecdsa_secp521r1_sha512",
    0x0804: "rsa_pss_rsae_sha256", 0x0805: "rsa_pss_rsae_sha384", 0x0806: "rsa_pss_rsae_sha512",
    0x0807: "ed25519", 0x0808: "ed448",
    0x0809: "rsa_pss_pss_sha256", 0x080A: "rsa_pss_pss_sha384", 0x080B: "rsa_pss_pss_sha512",
    0x081A: "ecdsa_brainpoolP256r1tls13_sha256", 0x081B: "ecdsa_brainpoolP384r1tls13_sha384",
    0x081C: "ecdsa_brainpoolP512r1tls13_sha512",
    0x0201: "rsa_pkcs1_sha1", 0x0203: "ecdsa_sha1", 0x0202: "dsa_sha1",
    0x0101: "rsa_pkcs1_md5", 0x0102: "dsa_md5", 0x0103: "ecdsa_md5",
    0x0301: "rsa_pkcs1_sha224", 0x0302: "dsa_sha224", 0x0303: "ecdsa_sha224",
    0x0402: "dsa_sha256", 0x0502: "dsa_sha384", 0x0602: "dsa_sha512",
}
SIGNATURE_CODES: dict[str, int] = {v: k for k, v in SIGNATURE_SCHEMES.items()}
TLS13_SIGNATURE_SCHEMES: tuple[int, ...] = (
    0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0807, 0x0808, 0x0809, 0x080A, 0x080B,
    0x081A, 0x081B, 0x081C, 0x0401, 0x0501, 0x0601, 0x0201, 0x0203,
)


def group_name(code: int) -> str:
    return GROUPS.get(code, f"group_0x{code:04X}")


def signature_name(code: int) -> str:
    return SIGNATURE_SCHEMES.get(code, f"sigscheme_0x{code:04X}")


ALERTS: dict[int, str] = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
    22: "record_overflow", 30: "decompression_failure", 40: "handshake_failure", 41: "no_certificate",
    42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error", 60: "export_restriction",
    70: "protocol_version", 71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
    90: "user_canceled", 100: "no_renegotiation", 109: "missing_extension", 110: "unsupported_extension",
    112: "unrecognized_name", 113: "bad_certificate_status_response", 115: "unknown_psk_identity",
    116: "certificate_required", 120: "no_application_protocol",
}


def alert_name(code: int) -> str:
    return ALERTS.get(code, f"alert_{code}")
