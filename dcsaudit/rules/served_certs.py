"""What ``listen --tls-cert-tests`` proves about a product as TLS client (issue 15 item 6; PS3.15 B.9/B.12,
RFC 5280 §6, RFC 6125 §6): the served-certificate records of its connections, judged per peer and per kind.

Shared by the check ``tls.client_validates_server_cert`` and the annex table, so both say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dcsaudit.models.core import FindingStatus
from dcsaudit.models.dicom import Initiator
from dcsaudit.models.network import SERVER_CERT_KINDS, ServedCertificate, ServerCertKind

# The evidence the listener leaves when --tls-cert-tests was on and no certificate was tried at all.
NO_TRIALS_PROBE = "listen.tls_cert_tests"

LABELS: dict[ServerCertKind, str] = {"control": "the good (control) certificate", "untrusted_ca": "from an unknown CA",
                                     "self_signed": "self-signed", "expired": "expired",
                                     "wrong_host_name": "for another host name"}


@dataclass
class KindResult:
    """All connections of one peer that got one kind of certificate: accepted once is accepted."""

    kind: ServerCertKind
    tries: list[tuple[ServedCertificate, list[str]]] = field(default_factory=list)  # (record, evidence ids)

    @property
    def outcome(self) -> str:
        seen = {s.outcome for s, _ev in self.tries}
        return next((o for o in ("accepted", "refused", "undetermined") if o in seen), "untested")

    @property
    def isolated(self) -> bool:
        return all(s.isolated for s, _ev in self.tries)

    @property
    def evidence(self) -> list[str]:
        want = self.outcome
        return [e for s, ev in self.tries if s.outcome == want for e in ev]

    def first(self) -> ServedCertificate | None:
        return next((s for s, _ev in self.tries if s.outcome == self.outcome), None)


def by_peer(initiators: list[Initiator]) -> dict[str, dict[ServerCertKind, KindResult]]:
    """Per product address that got served certificates: every kind (``untested`` when it made too few
    connections for that kind to come round)."""
    out: dict[str, dict[ServerCertKind, KindResult]] = {}
    for i in initiators:
        s = i.served_certificate
        if s is None:
            continue
        kinds = out.setdefault(i.peer, {k: KindResult(k) for k in ("control", *SERVER_CERT_KINDS)})
        kinds[s.kind].tries.append((s, list(i.evidence)))
    return out


def judge(kinds: dict[ServerCertKind, KindResult]) -> tuple[FindingStatus, str, list[str]]:
    """(status, summary, evidence) for one peer: fail when it went on with any defective certificate."""
    bad = [kinds[k] for k in SERVER_CERT_KINDS]
    ev = [e for r in kinds.values() for e in r.evidence]
    accepted = [r for r in bad if r.outcome == "accepted"]
    if accepted:
        return "fail", ("went on with server certificates it must refuse: "
                        + ", ".join(LABELS[r.kind] for r in accepted)), [e for r in accepted for e in r.evidence]
    open_ = [r for r in bad if r.outcome in ("untested", "undetermined")]
    if open_:
        parts = [f"{LABELS[r.kind]}: " + ("not tried (the product made no connection for it)" if r.outcome == "untested"
                                          else _detail(r)) for r in open_]
        n = sum(len(r.tries) for r in kinds.values())
        return "error", f"undetermined after {n} TLS connection(s): " + "; ".join(parts), ev
    control = kinds["control"]
    if control.outcome != "accepted":
        why = "not tried" if control.outcome == "untested" else f"{control.outcome} too"
        return "error", (f"undetermined: the good (control) certificate was {why}, so the refusals do not show that "
                         "the product validates certificates (serve one it trusts: listen --tls-cert)"), ev
    mixed = [r for r in bad if not r.isolated]
    if mixed:
        return "error", ("undetermined: refused, but " + ", ".join(LABELS[r.kind] for r in mixed) + " also came from "
                         "an unknown CA, so the refusal does not show that defect is checked (give listen "
                         "--tls-cert-signing-ca/--tls-cert-signing-key with a CA the product trusts)"), ev
    how = ", ".join(f"{LABELS[r.kind]}: {_alert(r)}" for r in bad)
    return "pass", f"refused every defective certificate ({how})", ev


def _alert(r: KindResult) -> str:
    s = r.first()
    return s.alert if s is not None and s.alert else "closed"


def _detail(r: KindResult) -> str:
    s = r.first()
    return s.detail if s is not None else "undetermined"
