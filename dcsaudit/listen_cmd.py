"""``dcsaudit listen``: the product as initiator and as audit-trail originator.

dcsaudit acts as a DICOM SCP (plain and/or TLS) and a syslog collector for a set duration, records
what the product sends (associations, user identities, TLS ClientHellos, audit messages), then
writes the same report.json and annex as a scan (N.8-8, the sender side of N.8-3, N.11-2, …).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

from dcsaudit.config import parse_config
from dcsaudit.context import AuditContext
from dcsaudit.models.audit import AuditTrail
from dcsaudit.models.core import Reason
from dcsaudit.models.dicom import Initiator
from dcsaudit.models.report import Report
from dcsaudit.policy import Policy
from dcsaudit.runner import assemble_report


def run_listen(args: argparse.Namespace, policy: Policy, progress: Callable[[str], None]) -> Report:
    config = parse_config({"deployment": f"listen on {args.bind}", "hosts": [{"address": args.bind}]}, "listen")
    ctx = AuditContext.create(config, progress)
    started = datetime.now(UTC)
    listener = collector = None
    initiators: list[Initiator] = []
    trail: AuditTrail | None = None
    try:
        if args.dicom_port is not None or args.dicom_tls_port is not None:
            from dcsaudit.listeners.dicom_scp import DicomListener

            listener = DicomListener(args.bind, args.dicom_port, args.dicom_tls_port, ctx.evidence,
                                     tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
                                     store_dir=args.store_dir, ae_title=args.ae_title)
            listener.start()
            progress(f"DICOM SCP listening (plain {listener.dicom_port}, TLS {listener.dicom_tls_port})")
        if args.syslog_tls_port is not None or args.syslog_udp_port is not None:
            from dcsaudit.listeners.syslog_collector import SyslogCollector

            collector = SyslogCollector(args.bind, args.syslog_tls_port, args.syslog_udp_port, ctx.evidence,
                                        cert_file=args.tls_cert, key_file=args.tls_key, ca_file=args.tls_ca)
            collector.start()
            progress(f"syslog collector listening (TLS {collector.tls_port}, UDP {collector.udp_port})")
        deadline = time.monotonic() + args.duration
        while (left := deadline - time.monotonic()) > 0:
            progress(f"listening, {left:4.0f} s left")
            time.sleep(min(1.0, left))
    except OSError as exc:
        ctx.evidence.add("listen", args.bind, False, f"could not listen: {exc.strerror or exc}",
                         reason=Reason.NOT_AVAILABLE)
        raise
    finally:
        if listener is not None:
            initiators = listener.stop()
        if collector is not None:
            trail = collector.stop()
    return assemble_report(ctx, policy, started, "listen", [], [], initiators, trail)
