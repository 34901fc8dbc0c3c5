"""Drift notifications: after a run is stored, its diff against the previous run of the deployment is sent,
when it is a regression (or, with ``notify.on: change``, any change), to

- the hospital's audit record repository: a DICOM audit message, PS3.15 A.5.3.11 Security Alert
  (EventID 110113, EventTypeCode 110129 Security Configuration, or 110128 Network Configuration when ports
  changed), RFC 5424 over RFC 5425 TLS (octet counting);
- a webhook: a JSON summary POSTed to the URL the config references.

Both are bounded by ``notify.timeout`` and never fatal: an outcome line per target says what happened.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from dcsaudit.history.diff import Diff

if TYPE_CHECKING:
    from dcsaudit.config import NotifyOptions
    from dcsaudit.models.report import Report

SECURITY_CONFIGURATION, NETWORK_CONFIGURATION = "110129", "110128"


def summary(d: Diff, report: Report) -> dict[str, Any]:
    """What the webhook receives: the regression lines first, no evidence, no secrets."""
    return {
        "tool": "dcsaudit",
        "deployment": d.deployment,
        "run_a": d.run_a,
        "run_b": d.run_b,
        "finished_at": report.finished_at.isoformat(),
        "regression": d.regression,
        "regressions": [c.text for c in d.changes if c.regression]
        + [f"new failing gating finding {f.check_id} on {f.target}" for f in d.findings if f.regression],
        "changes": [c.text for c in d.changes],
        "new_failing": [f"{f.check_id} {f.target}" for f in d.findings if f.change == "new"],
        "resolved": [f"{f.check_id} {f.target}" for f in d.findings if f.change == "resolved"],
        "certificates_expiring": [c.text for c in d.expiring],
    }


def post_webhook(url: str, payload: dict[str, Any], timeout: float) -> str:
    if not url.lower().startswith(("https://", "http://")):
        return "webhook: not an http(s) URL; nothing sent"
    req = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "dcsaudit"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return f"webhook: HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"webhook: HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"webhook: not delivered ({type(reason).__name__ if not isinstance(reason, str) else reason})"


def security_alert(d: Diff, report: Report) -> bytes:
    """PS3.15 A.5.3.11 Security Alert as an RFC 5424 message (A.6: PRI 85, MSGID DICOM+RFC3881)."""
    from dcsaudit.auditmsg import build
    from dcsaudit.auditmsg.build import Participant, ParticipantObject

    ports_changed = any(c.category == "ports" for c in d.changes)
    host = socket.gethostname() or "dcsaudit"
    me = Participant(user_id="dcsaudit", requestor=True, user_name="dcsaudit", nap_id=host, nap_type="1")
    lines = summary(d, report)["regressions"] or summary(d, report)["changes"]
    obj = ParticipantObject(object_id=d.deployment[:64], id_type=("12", "RFC-3881", "URI"), type_code="2",
                            details=[("dcsaudit-drift", "\n".join(lines[:50]).encode("utf-8"))])
    xml = build.audit_xml(
        "110113", action="E", outcome="4" if d.regression else "0",
        type_codes=[NETWORK_CONFIGURATION if ports_changed else SECURITY_CONFIGURATION],
        participants=[me], source_id="dcsaudit", objects=[obj],
        outcome_description=f"dcsaudit drift of {d.deployment!r}: run {d.run_a} -> run {d.run_b}"
                            + (" (regression)" if d.regression else ""),
    )
    return build.syslog_message(xml, app_name="dcsaudit")


def send_audit_message(target: str, message: bytes, opts: NotifyOptions) -> str:
    from dcsaudit.auditmsg.build import octet_frame

    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    ctx = ssl.create_default_context(cafile=str(opts.audit_ca_file) if opts.audit_ca_file else None)
    try:
        with socket.create_connection((host, int(port)), timeout=opts.timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as tls:
            tls.settimeout(opts.timeout)
            tls.sendall(octet_frame(message))
            try:
                tls.unwrap()  # RFC 5425 §4.4: close with close_notify
            except (OSError, ValueError):
                pass
        return f"audit repository {target}: Security Alert sent"
    except (OSError, ValueError) as exc:
        return f"audit repository {target}: not delivered ({type(exc).__name__}: {exc})"


def notify(opts: NotifyOptions, d: Diff, report: Report) -> list[str]:
    """Send what the options ask for; one outcome line per target (never raises)."""
    wanted = d.regression if opts.on == "regression" else bool(d.changes or d.findings)
    if not wanted or (opts.webhook is None and opts.audit_repository is None):
        return []
    outcomes = []
    if opts.audit_repository:
        outcomes.append(send_audit_message(opts.audit_repository, security_alert(d, report), opts))
    if opts.webhook is not None:
        from dcsaudit.config import ConfigError

        try:
            url = opts.webhook.resolve().get_secret_value()
        except ConfigError as exc:
            outcomes.append(f"webhook: {exc}")
        else:
            outcomes.append(post_webhook(url, summary(d, report), opts.timeout))
    return outcomes
