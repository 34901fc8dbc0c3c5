"""Client-initiated renegotiation (RFC 5246 §7.4.1.2, the renegotiation DoS vector), as sslyze tests it.

A full handshake and then renegotiations need a real TLS client: Python's ssl module cannot renegotiate,
so this uses nassl's ``LegacySslClient`` (OpenSSL 1.0.2, sslyze's own client for this test, see
``session_renegotiation_plugin._test_client_renegotiation``). The TLS audit supplies the version (the
highest accepted <= TLS 1.2; TLS 1.3 has no renegotiation, RFC 8446 §4.6) and its suites.

nassl blocks, and a thread cannot be killed (issue 12 F1): :func:`client_renegotiation` runs it in a daemon
thread of its own with a timeout on every socket read, and when the overall bound fires it shuts the
socket down from outside, which makes nassl's pending ``recv`` fail at once, so the thread ends even
against a server that drip-feeds its answers.

Verdicts, as sslyze's: all ``attempts`` renegotiations completed = accepted; the errors sslyze reads as a
refusal (ConnectionError, nassl's "handshake failed", the OpenSSL messages below) = not accepted. Unlike
sslyze, these are undetermined with their reason, never a verdict: a failed first handshake (a client
certificate is required, no common suite, a timeout), our own bound firing, and a renegotiation that
gets no answer within the read timeout. sslyze reads that silence as a refusal (Netty ignores the
request), but a server that is merely slow, or busy, is silent the same way; the evidence gives the
first handshake's time beside the timeout so a reader can weigh it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# sslyze's list (session_renegotiation_plugin.py): OpenSSL errors that are a server refusing renegotiation.
REJECTIONS = ("handshake failure", "no renegotiation", "tlsv1 unrecognized name", "tlsv1 alert internal error",
              "decryption failed or bad record mac", "sslv3 alert unexpected message", "shut down by peer",
              "unexpected record", "wrong version number")
ATTEMPTS = 10  # sslyze's default: a server with a rate limit stops accepting within ten
# sslyze's default client cipher list (SslConnection), tried when the audit's suites have no legacy-OpenSSL name.
DEFAULT_CIPHERS = "HIGH:MEDIUM:-aNULL:-eNULL:-3DES:-SRP:-PSK:-CAMELLIA"
_NASSL_VERSIONS = {"SSLv3": "SSLV3", "TLSv1.0": "TLSV1", "TLSv1.1": "TLSV1_1", "TLSv1.2": "TLSV1_2"}


@dataclass
class RenegResult:
    accepted: bool | None  # None: undetermined (see detail)
    detail: str
    completed: int = 0  # renegotiations the server completed
    version: str = ""
    steps: list[str] = field(default_factory=list)
    elapsed_ms: float = 0.0
    client_certificate_required: bool = False

    def data(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "renegotiations_completed": self.completed, "attempts": ATTEMPTS,
                "version": self.version, "steps": self.steps}


class _Run:
    """State shared between the blocking test and the coroutine that bounds it."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.aborted = False
        self.lock = threading.Lock()

    def abort(self) -> None:
        with self.lock:
            self.aborted = True
            sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in another thread; close alone does not
            except OSError:
                pass


def _blocking(run: _Run, host: str, port: int, version: str, ciphers: str, sni: str | None, read_timeout: float,
              connect_timeout: float, ignore_client_auth: bool) -> RenegResult:
    from nassl._nassl import OpenSSLError
    from nassl.legacy_ssl_client import LegacySslClient
    from nassl.ssl_client import ClientCertificateRequested, OpenSslVerifyEnum, OpenSslVersionEnum

    res = RenegResult(None, "", version=version)
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
    except OSError as exc:
        res.detail = f"connect failed: {exc.strerror or type(exc).__name__}"
        return res
    with run.lock:
        run.sock = sock
        aborted = run.aborted
    if aborted:
        sock.close()
        res.detail = "the time bound ran out"
        return res
    sock.settimeout(read_timeout)
    started = time.monotonic()
    client = LegacySslClient(underlying_socket=sock, ssl_version=OpenSslVersionEnum[_NASSL_VERSIONS[version]],
                             ssl_verify=OpenSslVerifyEnum.NONE,
                             ignore_client_authentication_requests=ignore_client_auth)
    try:
        client.set_cipher_list(ciphers)
    except OpenSSLError:
        client.set_cipher_list(DEFAULT_CIPHERS)
    if sni:
        client.set_tlsext_host_name(sni)
    try:
        try:
            client.do_handshake()
        except ClientCertificateRequested:
            res.client_certificate_required = True
            res.detail = "the first handshake needs a client certificate and none is configured for this test"
            res.steps.append("handshake: client certificate requested")
            return res
        except (OpenSSLError, OSError) as exc:
            res.detail = ("the time bound ran out during the first handshake" if run.aborted
                          else f"the first handshake failed: {_describe(exc)}")
            res.steps.append(f"handshake: {_describe(exc)}")
            return res
        handshake_ms = (time.monotonic() - started) * 1000
        res.steps.append(f"handshake completed in {handshake_ms:.0f} ms ({client.get_current_cipher_name()})")
        for _ in range(ATTEMPTS):
            try:
                client.do_renegotiate()
            except (OpenSSLError, OSError) as exc:
                res.steps.append(f"renegotiation {res.completed + 1}: {_describe(exc)}")
                if run.aborted:
                    res.detail = (f"the time bound ran out during renegotiation {res.completed + 1} "
                                  "(the server is slow or drip-feeds its answers)")
                    return res
                if isinstance(exc, TimeoutError | socket.timeout):
                    res.detail = (f"renegotiation {res.completed + 1} got no answer within the read timeout "
                                  f"({read_timeout:.1f} s; the first handshake took {handshake_ms:.0f} ms): a "
                                  "server that ignores renegotiation requests (Netty) and a slow one look the same")
                elif _is_rejection(exc):
                    res.accepted = False
                    res.detail = (f"renegotiation {res.completed + 1} refused: {_describe(exc)}"
                                  + (f" (after {res.completed} completed)" if res.completed else ""))
                else:
                    res.detail = f"renegotiation {res.completed + 1} ended with an unknown error: {_describe(exc)}"
                return res
            res.completed += 1
        res.steps.append(f"{res.completed} renegotiations completed")
        res.accepted = True
        res.detail = f"the server completed {res.completed} client-initiated renegotiations in a row"
        return res
    finally:
        try:
            sock.close()
        except OSError:
            pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer within the read timeout"
    text = str(exc.args[0]).strip() if exc.args else type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


def _is_rejection(exc: BaseException) -> bool:
    from nassl._nassl import OpenSSLError

    if isinstance(exc, ConnectionError):
        return True  # the server closed or reset the connection on our renegotiation ClientHello
    text = str(exc.args[0]) if exc.args else ""
    if isinstance(exc, OpenSSLError):
        return any(r in text for r in REJECTIONS)
    return "Nassl SSL handshake failed" in text  # the server closed: nassl's own OSError


async def client_renegotiation(host: str, port: int, *, version: str, ciphers: str, sni: str | None,
                               read_timeout: float, connect_timeout: float, bound: float,
                               client_cert_required: bool) -> RenegResult:
    """Run the test in a daemon thread; return within ``bound`` seconds (plus a moment for the thread to see
    its socket shut down) whatever the server does."""
    start = time.monotonic()
    run = _Run()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[RenegResult] = loop.create_future()

    def target() -> None:
        try:
            res = _blocking(run, host, port, version, ciphers, sni, read_timeout, connect_timeout,
                            ignore_client_auth=not client_cert_required)
        except Exception as exc:  # a bug in here must not kill the scan
            res = RenegResult(None, f"internal error: {type(exc).__name__}: {exc}", version=version)
        def deliver() -> None:
            if not done.done():
                done.set_result(res)

        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(deliver)
            except RuntimeError:  # the loop closed meanwhile: nobody waits any more
                pass

    threading.Thread(target=target, name=f"reneg {host}:{port}", daemon=True).start()
    try:
        res = await asyncio.wait_for(asyncio.shield(done), bound)
    except TimeoutError:
        run.abort()
        try:  # the thread sees its socket shut down at once; wait briefly for its own account
            res = await asyncio.wait_for(asyncio.shield(done), 1.0)
        except TimeoutError:
            res = RenegResult(None, "", version=version)
        res.accepted = None
        res.detail = f"no result within {bound:.1f} s (the server is slow or drip-feeds its answers); test stopped"
    res.elapsed_ms = (time.monotonic() - start) * 1000
    return res
