"""N.8.3 TCP Port Configuration: the observed port inventory as a firewall-ready table.

PS3.2 N.8.3 has no fixed table; it asks for "all other non-DICOM ports" for firewall configuration.
dcsaudit gives the observed list with each port's identified service and the evidence behind it.
"""

from __future__ import annotations

from dcsaudit.annex.cells import label, verified
from dcsaudit.checks.base import AuditData
from dcsaudit.models.core import AnnexTable, Cell, Provenance
from dcsaudit.rules.services import SERVICES


def tables(data: AuditData) -> list[tuple[str, AnnexTable]]:
    columns = ["Host", "Port", "Protocol", "State", "Service", "Observation"]
    rows: list[list[Cell]] = []
    listed = [e for e in data.endpoints if e.state != "closed"]
    for ep in sorted(listed, key=lambda e: (e.host, e.protocol, e.port)):
        service = SERVICES[ep.service].label
        if ep.state == "open" and ep.service != "unknown" and "inferred" not in ep.service_detail:
            svc = verified(service, ep.evidence)
        else:
            svc = Cell(value=service, provenance=Provenance.NOT_OBSERVED if ep.service == "unknown"
                       else Provenance.NOT_VERIFIABLE, evidence=ep.evidence, note=ep.service_detail)
        rows.append([label(ep.host), verified(str(ep.port), ep.evidence), label(ep.protocol.upper()),
                     verified(ep.state, ep.evidence), svc, label(ep.service_detail)])
    closed = len(data.endpoints) - len(listed)
    table = AnnexTable(
        id="N.8.3",
        numbered=False,
        title="TCP and UDP ports observed (firewall configuration)",
        columns=columns,
        rows=rows,
        empty_reason="" if rows else "no open or filtered port was found on the audited hosts",
        notes=[f"{closed} scanned port(s) answered closed and are not listed."] if closed else [],
    )
    return [("N.8.3", table)]
