"""Checks on what identification saw of DICOM endpoints (before the deep association audit)."""

from __future__ import annotations

from collections.abc import Iterator

from dcsaudit.checks.base import AuditData, Verdict, check


@check(id="dicom.identification_accepted_unknown_called_ae", title="Unconfigured Called AE Title accepted at identification",
       severity="medium", references=["PS3.8 §9.3.4 (A-ASSOCIATE-RJ reason 7)", "PS3.2 N.6.2"])
def accepted_any_scp(data: AuditData) -> Iterator[Verdict]:
    """Identification calls unconfigured ports with the generic title ANY-SCP: an accept means a
    promiscuous acceptor (the association audit measures this per AE in detail)."""
    ev_by_id = {e.id: e for e in data.evidence}
    for ep in data.endpoints:
        if ep.service not in ("dicom", "dicom-tls"):
            continue
        for ev_id in ep.evidence:
            ev = ev_by_id.get(ev_id)
            if ev is None or ev.probe not in ("identify.dicom", "identify.dicom_in_tls") or ev.data.get("kind") != "dicom":
                continue
            called = ev.data.get("called_ae")
            if called != "ANY-SCP":
                continue
            if ev.data.get("pdu") == "A-ASSOCIATE-AC":
                yield Verdict("fail", ep.key, "accepted an association called 'ANY-SCP'", [ev.id])
            else:
                yield Verdict("pass", ep.key, f"answered {ev.data.get('pdu')} to Called AE 'ANY-SCP'", [ev.id])
