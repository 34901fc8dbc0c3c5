"""The TLS wire codec: ClientHellos from real clients, truncated and garbage input (RFC 8446 §4.1.2)."""

from __future__ import annotations

import os
import random
import socket
import ssl
import threading

import pytest

from dcsaudit.probes.tls.wire import (
    HelloSpec,
    build_client_hello,
    build_sslv2_client_hello,
    parse_client_hello,
)
from dcsaudit.rules.tls_suites import VERSION_CODES


def _capture_python_client_hello(ctx: ssl.SSLContext, sni: str | None) -> bytes:
    a, b = socket.socketpair()
    try:
        def client() -> None:
            try:
                s = ctx.wrap_socket(a, server_hostname=sni, do_handshake_on_connect=False)
                s.settimeout(2)
                s.do_handshake()
            except (OSError, ssl.SSLError):
                pass

        t = threading.Thread(target=client, daemon=True)
        t.start()
        b.settimeout(2)
        data = b.recv(65536)
        b.close()
        t.join(3)
        return data
    finally:
        a.close()


def test_parse_real_openssl_client_hello() -> None:
    # Given the ClientHello that OpenSSL (via Python ssl) sends with ALPN and SNI
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["dicom", "h2"])
    raw = _capture_python_client_hello(ctx, "pacs.example")
    # When it is parsed
    info = parse_client_hello(raw)
    # Then versions, suites in order, groups, signature algorithms, SNI and ALPN come out by name
    assert "TLSv1.3" in info.versions and "TLSv1.2" in info.versions
    assert info.cipher_suites[0].startswith("TLS_AES_") or info.cipher_suites[0].startswith("TLS_CHACHA")
    assert "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in info.cipher_suites
    assert "x25519" in info.groups and "secp256r1" in info.groups
    assert "rsa_pss_rsae_sha256" in info.signature_algorithms
    assert info.sni == "pacs.example"
    assert info.alpn == ("dicom", "h2")
    assert info.key_share_groups and info.extended_master_secret


def test_round_trip_of_our_own_hello() -> None:
    # Given a ClientHello we build for TLS 1.2 with three suites
    spec = HelloSpec(version=VERSION_CODES["TLSv1.2"], suites=[0xC02F, 0x009C, 0x0005], groups=[23, 29],
                     signature_algorithms=[0x0401, 0x0804], sni="localhost")
    # When parsed back, Then order and names are kept
    info = parse_client_hello(build_client_hello(spec))
    assert info.cipher_suites == ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256",
                                  "TLS_RSA_WITH_RC4_128_SHA")
    assert info.groups == ("secp256r1", "x25519")
    assert info.signature_algorithms == ("rsa_pkcs1_sha256", "rsa_pss_rsae_sha256")
    assert info.versions == ("TLSv1.2",) and info.renegotiation_info


def test_sslv2_format_hello() -> None:
    # Given an SSL 2.0 CLIENT-HELLO, When parsed, Then its SSLv2 cipher kinds are named
    info = parse_client_hello(build_sslv2_client_hello([0x0700C0, 0x010080]))
    assert info.sslv2_format
    assert info.cipher_suites == ("SSL_CK_DES_192_EDE3_CBC_WITH_MD5", "SSL_CK_RC4_128_WITH_MD5")


def test_truncated_and_garbage_input_raise_value_error_only() -> None:
    # Given every prefix of a valid hello and random garbage
    raw = build_client_hello(HelloSpec(version=0x0304, suites=[0x1301], groups=[29], key_shares=[(29, b"\x01" * 32)]))
    rng = random.Random(7)
    inputs = [raw[:n] for n in range(len(raw))] + [os.urandom(rng.randint(0, 300)) for _ in range(300)]
    inputs += [bytes([22, 3, 1, 0, 4, 1, 0, 0, 0]), b"\x80\x03\x01\x00", b"GET / HTTP/1.1\r\n\r\n"]
    for data in inputs:
        # When parsed, Then it either parses or raises ValueError (never another exception)
        try:
            parse_client_hello(data)
        except ValueError:
            pass
    with pytest.raises(ValueError):
        parse_client_hello(raw[:40])
