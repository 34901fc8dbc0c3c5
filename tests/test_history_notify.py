"""Drift notifications (issue 13): on a regression, a PS3.15 A.5.3.11 Security Alert over RFC 5425 TLS to
the audit record repository and a JSON POST to a webhook; bounded and never fatal.

Given a baseline run and a run where plaintext DICOM became exposed, stored one after the other (the path
``scan`` takes after writing its outputs), with a real TLS syslog receiver and a real HTTP server on
loopback: both receive one notification; an unreachable target costs at most the timeout and the run is
still stored."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dcsaudit.auditmsg.rfc5424 import parse
from dcsaudit.auditmsg.xmlbody import parse_body
from dcsaudit.config import NotifyOptions
from dcsaudit.history.commands import store_run
from dcsaudit.history.store import open_store
from tests.peers.common import LOOPBACK, TestPKI, free_port
from tests.test_history_store import MODERN, ep, finding, report, tls


@pytest.fixture()
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}/hooks/dcsaudit?token=t0ken", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def repository(pki: TestPKI) -> Iterator[tuple[int, list[bytes]]]:
    """A syslog-over-TLS receiver (RFC 5425: octet-counted frames)."""
    received: list[bytes] = []
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_chain, pki.server_key)
    listener = socket.create_server((LOOPBACK, 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with ctx.wrap_socket(raw, server_side=True) as conn:
                    data = b""
                    while chunk := conn.recv(65536):
                        data += chunk
                length, _, rest = data.partition(b" ")
                received.append(rest[: int(length)])
            except (OSError, ValueError):
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        stop.set()
        t.join(5)
        listener.close()


def _baseline_and_regression(tmp_path: Path) -> tuple[str, list[object]]:
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    base = report([ep(2762, t=tls(MODERN)), ep(104, state="closed", service="unknown", plaintext=None)])
    worse = report([ep(2762, t=tls(MODERN)), ep(104, service="dicom", plaintext=True)],
                   [finding("inventory.plaintext_dicom", "fail", "10.0.0.5:104/tcp", gating=True)])
    return url, [base, worse]


def test_regression_is_sent_to_the_repository_and_the_webhook(
        tmp_path: Path, pki: TestPKI, webhook: tuple[str, list[dict[str, object]]],
        repository: tuple[int, list[bytes]], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    hook_url, posts = webhook
    port, messages = repository
    monkeypatch.setenv("DRIFT_WEBHOOK", hook_url)
    opts = NotifyOptions.model_validate({"webhook": {"env": "DRIFT_WEBHOOK"}, "audit_repository": f"127.0.0.1:{port}",
                                         "audit_ca_file": str(pki.ca_file), "timeout": 5})
    url, (base, worse) = _baseline_and_regression(tmp_path)
    # When the baseline is stored (no earlier run: nothing to compare, nothing sent)
    assert store_run(base, url, tmp_path, quiet=False, notify=opts)  # type: ignore[arg-type]
    assert posts == [] and messages == []
    # And then the run with the regression
    assert store_run(worse, url, tmp_path, quiet=False, notify=opts)  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while not messages and time.monotonic() < deadline:
        time.sleep(0.05)
    # Then the webhook got one JSON summary naming the regression
    [post] = posts
    assert post["regression"] is True and (post["run_a"], post["run_b"]) == (1, 2)
    assert "plaintext DICOM newly exposed on 10.0.0.5:104/tcp" in post["regressions"]  # type: ignore[operator]
    # And the repository one RFC 5424 message holding a valid PS3.15 Security Alert
    [msg] = messages
    header = parse(msg)
    assert header.errors == [] and header.pri == 85 and header.msgid == "DICOM+RFC3881" and header.bom
    body = parse_body(header.msg)
    assert body.schema_valid, body.errors
    assert body.event_id == "110113" and body.event_type_codes == ["110128"] and body.outcome == "4"
    # And the outcomes are said, without the webhook's token
    err = capsys.readouterr().err
    assert "notify: webhook: HTTP 204" in err and "Security Alert sent" in err and "t0ken" not in err


def test_no_regression_sends_nothing(tmp_path: Path, webhook: tuple[str, list[dict[str, object]]],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    hook_url, posts = webhook
    monkeypatch.setenv("DRIFT_WEBHOOK", hook_url)
    opts = NotifyOptions.model_validate({"webhook": {"env": "DRIFT_WEBHOOK"}})
    url, (base, worse) = _baseline_and_regression(tmp_path)
    for r in (worse, base):  # the reverse direction: the exposure was closed
        assert store_run(r, url, tmp_path, quiet=True, notify=opts)  # type: ignore[arg-type]
    assert posts == []


def test_unreachable_targets_are_bounded_and_never_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    dead = free_port()  # nothing listens: refused at once; the timeout bounds a silent one
    monkeypatch.setenv("DRIFT_WEBHOOK", f"http://{LOOPBACK}:{dead}/hook")
    opts = NotifyOptions.model_validate({"webhook": {"env": "DRIFT_WEBHOOK"}, "audit_repository": f"127.0.0.1:{dead}",
                                         "timeout": 2})
    url, (base, worse) = _baseline_and_regression(tmp_path)
    t = time.monotonic()
    for r in (base, worse):
        assert store_run(r, url, tmp_path, quiet=True, notify=opts)  # type: ignore[arg-type]
    assert time.monotonic() - t < 10
    err = capsys.readouterr().err
    assert err.count("not delivered") == 2
    with open_store(url) as store:
        assert len(store.runs()) == 2  # both runs stored whatever the notifications did


def test_notify_options_are_validated() -> None:
    with pytest.raises(ValueError):
        NotifyOptions.model_validate({"audit_repository": "no-port-here"})
    with pytest.raises(ValueError):
        NotifyOptions.model_validate({"webhook": "https://literal.example/with-token"})  # literal secret refused
