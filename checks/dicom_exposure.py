"""Checks on what identification saw of DICOM endpoints (before the deep association audit)."""

from __future__ import annotations

from collections.abc import Iterator

from dcsaudit.checks.base import AuditData, Verdict, check

GENERIC_CALLED_AE = "ANY-SCP"  # what identification calls a port no configured AE names


@check(id="dicom.identification_accepted_unknown_called_ae", title="Unconfigured Called AE Title accepted at identification",
       severity="medium", references=["PS3.8 §9.3.4 (A-ASSOCIATE-RJ reason 7)", "PS3.2 N.6.2"])
def accepted_any_scp(data: AuditData) -> Iterator[Verdict]:
    """Identification calls unconfigured ports with the generic title ANY-SCP: an accept means a
    promiscuous acceptor (the association audit measures this per AE in detail)."""
    for ep in data.endpoints:
        if ep.service not in ("dicom", "dicom-tls") or ep.identification is None:
            continue
        for ans in (ep.identification.dicom, ep.identification.dicom_in_tls):
            if ans is None or ans.kind != "dicom" or ans.called_ae != GENERIC_CALLED_AE:
                continue
            ev = [ans.evidence] if ans.evidence else ep.evidence
            if ans.pdu == "A-ASSOCIATE-AC":
                yield Verdict("fail", ep.key, f"accepted an association called '{GENERIC_CALLED_AE}'", ev)
            else:
                yield Verdict("pass", ep.key, f"answered {ans.pdu} to Called AE '{GENERIC_CALLED_AE}'", ev)
