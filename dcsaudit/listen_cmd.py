"""``dcsaudit listen``: the product as initiator and as audit-trail originator.

dcsaudit acts as a DICOM SCP (plain and/or TLS) and a syslog collector for a set duration, records
what the product sends (associations, user identities, TLS ClientHellos, audit messages), then
writes the same report.json and annex as a scan (N.8-8, the sender side of N.8-3, N.11-2, …).

The collector streams every message to ``messages.jsonl`` (classified) and ``received.log`` (raw) in the
output directory as they come; report.json keeps counts, classes and examples. ``--format``, ``--sign``
and ``--redact`` mean what they mean for scan; with ``--redact`` both files are rewritten redacted once
the window has closed (with the report's placeholders; raw records keep their length prefix right), and
``--sign`` lists them in manifest.json. Until then they hold what arrived, unredacted, in ``--out``.

Bounded end: the listeners stop within about 2 s of ``--duration``. SIGTERM or SIGINT end the window
early the same way and the report is still written, with ``run.complete: false`` and the reason (exit
status 4); a second signal ends the process at once.

``--tls-cert-tests`` (issue 15 item 6, the product as TLS client): the DICOM TLS port serves, per peer, the good
certificate and then one defective certificate per connection (:mod:`dcsaudit.listeners.bad_server_certs`);
each captured connection says which one it got and whether the product went on.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from dcsaudit.config import ConfigError, parse_config
from dcsaudit.context import AuditContext
from dcsaudit.listeners.bad_server_certs import SigningCa, load_signing_ca
from dcsaudit.models.audit import AuditTrail
from dcsaudit.models.core import Reason
from dcsaudit.models.dicom import Initiator
from dcsaudit.models.report import Report
from dcsaudit.policy import Policy
from dcsaudit.runner import assemble_report

DICOM_STOP_GRACE = 0.5  # open associations get this long to end by themselves
CLASSIFY_GRACE = 0.5  # the classifier gets this long to catch up before the rest is reported unclassified


class _Signals:
    """The first SIGTERM/SIGINT ends the listening window (``reason`` says which); a second one ends the
    process with the default action. Only the main thread can own handlers: elsewhere, nothing changes."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.fired = threading.Event()
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.reason is not None:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.reason = f"{signal.Signals(signum).name} received"
        self.fired.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Signals]:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[int(sig)] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for signum, prev in self._previous.items():
                signal.signal(signum, prev)  # type: ignore[arg-type]


def _cert_tests(args: argparse.Namespace) -> tuple[bool, SigningCa | None]:
    """``--tls-cert-tests`` and its optional signing CA, checked before anything listens."""
    on = bool(getattr(args, "tls_cert_tests", False))
    ca, key = getattr(args, "tls_cert_signing_ca", None), getattr(args, "tls_cert_signing_key", None)
    if (ca is None) != (key is None):
        raise ConfigError("listen: --tls-cert-signing-ca and --tls-cert-signing-key go together")
    if ca is not None and not on:
        raise ConfigError("listen: --tls-cert-signing-ca is for --tls-cert-tests")
    if on and args.dicom_tls_port is None:
        raise ConfigError("listen: --tls-cert-tests needs --dicom-tls-port")
    if ca is None or key is None:
        return on, None
    signing = SigningCa(ca, key)
    try:
        load_signing_ca(signing)
    except (OSError, ValueError, TypeError) as exc:  # never echo key material: the type and file names only
        raise ConfigError(f"listen: cannot load the signing CA {ca} / {key}: {type(exc).__name__}") from None
    return on, signing


def run_listen(args: argparse.Namespace, policy: Policy, progress: Callable[[str], None]) -> Report:
    cert_tests, signing_ca = _cert_tests(args)
    config = parse_config({"deployment": f"listen on {args.bind}", "hosts": [{"address": args.bind}]}, "listen")
    ctx = AuditContext.create(config, progress)
    started = datetime.now(UTC)
    listener = collector = None
    initiators: list[Initiator] = []
    trail: AuditTrail | None = None
    out_dir: Path | None = getattr(args, "out", None)
    with _Signals().installed() as signals:
        try:
            if args.dicom_port is not None or args.dicom_tls_port is not None:
                from dcsaudit.listeners.dicom_scp import DicomListener

                listener = DicomListener(args.bind, args.dicom_port, args.dicom_tls_port, ctx.evidence,
                                         tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
                                         store_dir=args.store_dir, ae_title=args.ae_title,
                                         cert_tests=cert_tests, signing_ca=signing_ca)
                listener.start()
                progress(f"DICOM SCP listening (plain {listener.dicom_port}, TLS {listener.dicom_tls_port})")
            if args.syslog_tls_port is not None or args.syslog_udp_port is not None:
                from dcsaudit.listeners.syslog_collector import SyslogCollector

                collector = SyslogCollector(args.bind, args.syslog_tls_port, args.syslog_udp_port, ctx.evidence,
                                            cert_file=args.tls_cert, key_file=args.tls_key, ca_file=args.tls_ca,
                                            out_dir=out_dir)
                collector.start()
                progress(f"syslog collector listening (TLS {collector.tls_port}, UDP {collector.udp_port})")
            deadline = time.monotonic() + args.duration
            while (left := deadline - time.monotonic()) > 0 and not signals.fired.is_set():
                progress(f"listening, {left:4.0f} s left")
                signals.fired.wait(min(1.0, left))
        except OSError as exc:
            ctx.evidence.add("listen", args.bind, False, f"could not listen: {exc.strerror or exc}",
                             reason=Reason.NOT_AVAILABLE)
            raise
        finally:
            # Both stop at once (each bounded), so the end is within about 2 s of the window.
            stoppers: list[threading.Thread] = []
            box: dict[str, object] = {}
            if listener is not None:
                lst = listener
                stoppers.append(threading.Thread(target=lambda: box.update(dicom=lst.stop(DICOM_STOP_GRACE))))
            if collector is not None:
                col = collector
                stoppers.append(threading.Thread(
                    target=lambda: box.update(syslog=col.stop(drain_seconds=0.2, classify_seconds=CLASSIFY_GRACE))))
            for t in stoppers:
                t.start()
            for t in stoppers:
                t.join(5.0)
            initiators = box.get("dicom", []) or []  # type: ignore[assignment]
            trail = box.get("syslog")  # type: ignore[assignment]
            for name, obj in (("dicom", listener), ("syslog", collector)):
                if obj is not None and name not in box:
                    ctx.evidence.add("listen", args.bind, False, f"the {name} listener did not stop within 5 s; "
                                     "what it captured is not in this report", reason=Reason.TIMEOUT)
        interrupted = signals.reason
        if interrupted is not None:
            ctx.evidence.add("listen", args.bind, False, f"listen interrupted: {interrupted}; the report holds what "
                             "was captured until then", reason=Reason.SKIPPED)
        return assemble_report(ctx, policy, started, "listen", [], [], initiators, trail, interrupted=interrupted)
