"""Service identification against real peers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from dcsaudit.config import DeploymentConfig, parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.endpoint import Endpoint
from dcsaudit.probes.identify import identify_all
from tests.peers.common import LOOPBACK, TestPKI, free_port
from tests.peers.dicom_peers import pynetdicom_scp, storescp
from tests.peers.spine_peers import (
    dual_plain_and_tls_dicom,
    openssl_s_server,
    server_tls_context,
    silent_listener,
)
from tests.peers.tls_peers import rsyslog_gtls

READ_TIMEOUT = 1.5


def _config(ports: list[int], aes: list[dict[str, object]] | None = None, **scan: object) -> DeploymentConfig:
    return parse_config({
        "deployment": "identification test",
        "hosts": [{"address": LOOPBACK, "tcp_ports": ports}],
        "application_entities": aes or [],
        "scan": {"timeouts": {"connect": 1, "read": READ_TIMEOUT, "tls_handshake": 2}, **scan},
    })


def identify(port: int, aes: list[dict[str, object]] | None = None, **scan: object
             ) -> tuple[Endpoint, float, AuditContext]:
    ctx = AuditContext.create(_config([port], aes, **scan))
    ep = Endpoint(host=LOOPBACK, port=port, protocol="tcp", state="open")
    start = time.monotonic()
    [out] = asyncio.run(identify_all(ctx, [ep]))
    return out, time.monotonic() - start, ctx


def test_pynetdicom_plain_is_dicom() -> None:
    # Given a pynetdicom Verification SCP without TLS
    with pynetdicom_scp() as port:
        # When it is identified
        ep, elapsed, ctx = identify(port)
    # Then it is plaintext DICOM, found quickly
    assert ep.service == "dicom"
    assert ep.plaintext_dicom is True
    assert elapsed < 3
    # And the typed answer says what came back, citing its evidence
    assert ep.identification is not None
    plain = ep.identification.dicom
    assert plain is not None and (plain.kind, plain.ok, plain.pdu) == ("dicom", True, "A-ASSOCIATE-AC")
    assert plain.called_ae == "ANY-SCP" and plain.context_accepted is True
    assert plain.implementation_class_uid and plain.max_pdu_length
    ev = ctx.evidence.get(plain.evidence or "")
    assert ev is not None and ev.probe == "identify.dicom" and ev.id in ep.evidence
    # and no TLS handshake was sent to a plaintext DICOM port (the skipped handshake is still recorded)
    hs = ep.identification.tls
    assert hs is not None and (hs.kind, hs.reason, hs.bare_connect) == ("not-probed", "skipped", False)
    assert ep.identification.dicom_in_tls is None and ep.identification.http is None


def test_pynetdicom_rejecting_called_ae_is_still_dicom() -> None:
    # Given an SCP that rejects any Called AE Title but its own
    with pynetdicom_scp(require_called=True) as port:
        ep, _, _ = identify(port)
    # Then a reject still proves DICOM, and the reject triple is recorded
    assert ep.service == "dicom"
    assert ep.identification is not None and ep.identification.dicom is not None
    plain = ep.identification.dicom
    assert plain.pdu == "A-ASSOCIATE-RJ" and plain.reject is not None
    assert (plain.reject.result, plain.reject.source, plain.reject.reason) == (1, 1, 7)
    assert plain.reject.reason_str  # with its PS3.8 meaning


def test_pynetdicom_tls_is_dicom_tls(pki: TestPKI) -> None:
    # Given a pynetdicom SCP that only speaks TLS
    with pynetdicom_scp(ssl_context=server_tls_context(pki)) as port:
        ep, elapsed, _ = identify(port)
    # Then DICOM is found inside TLS, and plaintext is not accepted
    assert ep.service == "dicom-tls"
    assert ep.plaintext_dicom is False
    assert elapsed < READ_TIMEOUT + 3
    # And the typed answers show the handshake and the association inside it
    ident = ep.identification
    assert ident is not None and ident.tls is not None and ident.dicom_in_tls is not None
    assert ident.tls.kind == "tls" and ident.tls.version in ("TLSv1.2", "TLSv1.3") and ident.tls.cipher
    assert (ident.dicom_in_tls.kind, ident.dicom_in_tls.pdu) == ("dicom", "A-ASSOCIATE-AC")
    assert ident.dicom is not None and ident.dicom.kind != "dicom"


def test_dcmtk_storescp_tls_is_dicom_tls(pki: TestPKI, tmp_path: Path) -> None:
    # Given DCMTK storescp with +tls
    with storescp(tmp_path, tls=(pki.server_key, pki.server_cert)) as port:
        ep, _, _ = identify(port)
    assert ep.service == "dicom-tls"
    assert ep.plaintext_dicom is False


def test_dcmtk_storescp_plain_is_dicom(tmp_path: Path) -> None:
    with storescp(tmp_path) as port:
        ep, _, _ = identify(port)
    assert ep.service == "dicom"


def test_openssl_s_server_is_tls_not_dicom(pki: TestPKI) -> None:
    # Given openssl s_server: TLS whose payload is not DICOM (it echoes, never answers a PDU)
    with openssl_s_server(pki) as port:
        ep, elapsed, _ = identify(port)
    # Then it is TLS, not DICOM, within the read timeout
    assert ep.service == "tls"
    assert elapsed < READ_TIMEOUT + 3


def test_rsyslog_tls_input_is_syslog_tls(pki: TestPKI) -> None:
    # Given rsyslog with gtls listening for RFC 5425 on a port the config names as a syslog TLS port
    with rsyslog_gtls(pki) as port:
        ep, _, _ = identify(port, syslog_tls_ports=[port])
    # Then it is recognised as syslog over TLS, and the inference is stated
    assert ep.service == "syslog-tls"
    assert "inferred" in ep.service_detail


def test_rsyslog_on_unnamed_port_is_plain_tls(pki: TestPKI) -> None:
    # Given the same receiver on a port not named as syslog: silence proves nothing, so only TLS is claimed
    with rsyslog_gtls(pki) as port:
        ep, _, _ = identify(port)
    assert ep.service == "tls"


def test_closed_port_is_unknown_with_refused_reason() -> None:
    port = free_port()  # nothing listens
    ep, elapsed, ctx = identify(port)
    assert ep.service == "unknown"
    reasons = {e.reason for e in ctx.evidence.items()}
    assert "refused" in reasons
    assert elapsed < 2


def test_silent_listener_times_out_within_bound() -> None:
    # Given a listener that accepts TCP and never answers
    with silent_listener() as port:
        ep, elapsed, ctx = identify(port)
    # Then it is unknown, the evidence says timeout, and identification stayed within its bounds
    assert ep.service == "unknown"
    assert any(e.reason == "timeout" for e in ctx.evidence.items())
    assert elapsed < READ_TIMEOUT + 2 + 2


def test_port_serving_plaintext_and_tls_dicom_is_reported(pki: TestPKI) -> None:
    # Given one port that answers DICOM both in plaintext and inside TLS, configured as a TLS AE
    with dual_plain_and_tls_dicom(pki) as port:
        ep, _, _ = identify(port, [{"ae_title": "DUAL", "host": LOOPBACK, "port": port, "tls": True}])
    # Then it is DICOM over TLS that also accepts plaintext, and the detail says so
    assert ep.service == "dicom-tls"
    assert ep.plaintext_dicom is True
    assert "plaintext" in ep.service_detail


def test_http_server_is_http() -> None:
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), http.server.SimpleHTTPRequestHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        ep, _, _ = identify(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    assert ep.service == "http"
    assert ep.identification is not None and ep.identification.http is not None
    answer = ep.identification.http
    assert answer.kind == "http" and not answer.over_tls and (answer.status_line or "").startswith("HTTP/")


@pytest.mark.parametrize("client_cert", ["required"])
def test_tls_requiring_client_cert_without_credentials(pki: TestPKI, client_cert: str) -> None:
    # Given a DICOM TLS SCP that requires a client certificate, and no credentials configured
    with pynetdicom_scp(ssl_context=server_tls_context(pki, client_cert)) as port:
        ep, _, ctx = identify(port)
    # Then the port is TLS, and the evidence says a client certificate is required
    assert ep.service == "tls"
    assert any(e.reason == "client_certificate_required" for e in ctx.evidence.items()), [(e.probe, e.reason, e.summary) for e in ctx.evidence.items()]


def test_plaintext_dicom_port_gets_no_tls_handshake_and_stays_free() -> None:
    # Given a pynetdicom acceptor that allows one association and keeps a slot for any connection
    # without a request until its ARTIM (30 s) fires
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    with pynetdicom_scp("ONE", max_associations=1, acse_timeout=30) as port:
        # When it is identified
        ep, _, ctx = identify(port)
        # Then no TLS handshake was sent to it, and the evidence says why
        tls_ev = [e for e in ctx.evidence.items() if e.probe == "identify.tls"]
        assert ep.service == "dicom" and [e.reason for e in tls_ev] == ["skipped"]
        # And an association is accepted within 2 s, far below the 30 s ARTIM: identification left no
        # connection for the acceptor's timer (pynetdicom ends a released association's thread in ms)
        scu = AE(ae_title="DCSAUDIT")
        scu.add_requested_context(Verification)
        deadline = time.monotonic() + 2
        accepted = False
        while not accepted and time.monotonic() < deadline:
            assoc = scu.associate(LOOPBACK, port, ae_title="ONE")
            accepted = assoc.is_established
            if accepted:
                assoc.release()
            else:
                time.sleep(0.05)
    assert accepted


def _https_server(pki: TestPKI) -> tuple[object, int]:
    """http.server behind ssl: answers a complete GET, stays silent to a PDU (no line end)."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), http.server.SimpleHTTPRequestHandler)
    server.socket = server_tls_context(pki).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def test_stdlib_https_server_is_https_without_waiting_a_read_timeout(pki: TestPKI) -> None:
    # Given an HTTPS server from the standard library (it waits for a request line a PDU never sends)
    server, port = _https_server(pki)
    try:
        # When it is identified
        ep, elapsed, _ = identify(port)
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
    # Then it is HTTPS, found by the GET that started beside the silent A-ASSOCIATE-RQ inside TLS
    assert ep.service == "https", ep.service_detail
    assert ep.identification is not None and ep.identification.http is not None
    assert ep.identification.http.over_tls and (ep.identification.http.status_line or "").startswith("HTTP/1.")
    assert elapsed < READ_TIMEOUT, elapsed


@pytest.mark.parametrize("mode", ["-WWW", "-www"])
def test_openssl_s_server_web_modes_are_https(pki: TestPKI, mode: str) -> None:
    # Given openssl s_server answering HTTP only to a complete GET request
    with openssl_s_server(pki, [mode]) as port:
        ep, elapsed, _ = identify(port)
    # Then it is HTTPS, before the DICOM probe inside TLS timed out
    assert ep.service == "https", (ep.service_detail, ep.identification)
    assert elapsed < READ_TIMEOUT, elapsed


def test_silent_tls_port_costs_one_read_timeout_not_two(pki: TestPKI) -> None:
    # Given a TLS server (a thread per connection) that completes the handshake and then never answers
    from tests.peers.common import tcp_server

    server_ctx = server_tls_context(pki)

    def handshake_then_silence(conn: socket.socket) -> None:
        tls = server_ctx.wrap_socket(conn, server_side=True)
        tls.settimeout(10)
        while tls.recv(4096):
            pass

    with tcp_server(handshake_then_silence, threaded=True) as port:
        ep, elapsed, _ = identify(port)
    # Then it is TLS, and the DICOM and HTTPS probes inside TLS waited side by side
    assert ep.service == "tls"
    assert ep.identification is not None and ep.identification.http is not None
    assert ep.identification.http.over_tls and ep.identification.http.kind == "silent"
    assert elapsed < READ_TIMEOUT + 1.2, elapsed


def test_one_connection_at_a_time_tls_server_is_still_identified(pki: TestPKI) -> None:
    # Given openssl s_server in echo mode: it serves one connection at a time and never answers a PDU
    with openssl_s_server(pki) as port:
        ep, elapsed, _ = identify(port)
    # Then it is TLS, without waiting two read timeouts
    assert ep.service == "tls"
    assert elapsed < 2 * READ_TIMEOUT, elapsed


def test_configured_dicom_tls_ae_gets_no_https_probe_beside_it(pki: TestPKI) -> None:
    # Given a pynetdicom TLS SCP configured as a TLS AE
    with pynetdicom_scp(ssl_context=server_tls_context(pki)) as port:
        ep, _, ctx = identify(port, [{"ae_title": "TESTSCP", "host": LOOPBACK, "port": port, "tls": True}])
    # Then it is DICOM over TLS and no HTTP request was sent to it
    assert ep.service == "dicom-tls"
    assert not [e for e in ctx.evidence.items() if e.probe == "identify.http"]


def test_silent_ports_do_not_starve_the_others_of_their_host() -> None:
    # Given 12 listeners that never answer and one DICOM SCP on the same host, two slots per host
    from contextlib import ExitStack

    with ExitStack() as stack, pynetdicom_scp() as dicom_port:
        silent = [stack.enter_context(silent_listener()) for _ in range(12)]
        ports = [*silent, dicom_port]
        ctx = AuditContext.create(_config(ports, concurrency={"overall": 4, "per_host": 2}))
        eps = [Endpoint(host=LOOPBACK, port=p, protocol="tcp", state="open") for p in ports]
        start = time.monotonic()
        out = asyncio.run(identify_all(ctx, eps))
        elapsed = time.monotonic() - start
    # Then every port is identified, and a slot was held for work, not for waiting: each silent port
    # costs its TLS handshake timeout (2 s) once, not once per two ports (holding slots took 12.4 s)
    by_port = {e.port: e.service for e in out}
    assert by_port[dicom_port] == "dicom"
    assert all(by_port[p] == "unknown" for p in silent)
    assert elapsed < 6.0, elapsed
