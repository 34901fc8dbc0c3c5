"""Building annex cells with their provenance (verified, declared, contradicted, not verifiable, not observed).

Every table builder goes through these helpers so that the rule "observed beats declared, and a
disagreement is shown, never hidden" lives in one place.
"""

from __future__ import annotations

from collections.abc import Iterable

from dcsaudit.models.core import Cell, Provenance


def label(value: str) -> Cell:
    """A row heading or parameter name: part of the template, not a claim about the product."""
    return Cell(value=value, provenance=Provenance.LABEL)


def verified(value: str, evidence: Iterable[str], note: str = "") -> Cell:
    return Cell(value=value, provenance=Provenance.VERIFIED, evidence=list(evidence), observed=value, note=note)


def not_observed(note: str = "not observed in this audit") -> Cell:
    return Cell(value="", provenance=Provenance.NOT_OBSERVED, note=note)


def not_verifiable(note: str = "not verifiable from the network") -> Cell:
    return Cell(value="", provenance=Provenance.NOT_VERIFIABLE, note=note)


def declared_value(declared: dict[str, dict[str, str]], table_id: str, row_label: str) -> str | None:
    return declared.get(table_id, {}).get(row_label)


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def reconcile(
    declared: dict[str, dict[str, str]],
    table_id: str,
    row_label: str,
    observed: str | None,
    evidence: Iterable[str] = (),
    *,
    unobservable_note: str = "not verifiable from the network",
    observable: bool = False,
) -> Cell:
    """One cell from what was observed (may be None) and what the vendor declared (may be absent).

    - observed and declared agree (or nothing declared): verified;
    - both present and different: contradicted, showing both;
    - only declared: declared;
    - neither: not verifiable, with the reason — or, with ``observable``, not observed in this
      audit (a probe could see it but did not), with the reason.
    """
    claim = declared_value(declared, table_id, row_label)
    ev = list(evidence)
    if observed is not None:
        if claim is not None and not _same(claim, observed):
            # No note: the documents show declared and observed side by side for contradicted cells.
            return Cell(value=observed, provenance=Provenance.CONTRADICTED, evidence=ev, declared=claim,
                        observed=observed)
        return Cell(value=observed, provenance=Provenance.VERIFIED, evidence=ev, observed=observed,
                    declared=claim)
    if claim is not None:
        return Cell(value=claim, provenance=Provenance.DECLARED, declared=claim)
    return Cell(value="", provenance=Provenance.NOT_OBSERVED if observable else Provenance.NOT_VERIFIABLE,
                note=unobservable_note)
