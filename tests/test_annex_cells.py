"""Provenance rules of annex cells: observed beats declared, and a disagreement is shown."""

from __future__ import annotations

from dcsaudit.annex.cells import reconcile
from dcsaudit.models.core import Provenance

DECL = {"N.6-1": {"Max": "10"}}


def test_observed_matching_declared_is_verified() -> None:
    c = reconcile(DECL, "N.6-1", "Max", "10", ["ev-1"])
    assert c.provenance is Provenance.VERIFIED and c.evidence == ["ev-1"] and c.declared == "10"


def test_observed_differing_from_declared_is_contradicted() -> None:
    c = reconcile(DECL, "N.6-1", "Max", "8", ["ev-1"])
    assert c.provenance is Provenance.CONTRADICTED and c.declared == "10" and c.observed == "8"


def test_only_declared_is_declared() -> None:
    c = reconcile(DECL, "N.6-1", "Max", None)
    assert c.provenance is Provenance.DECLARED and c.value == "10"


def test_neither_is_not_verifiable() -> None:
    c = reconcile(DECL, "N.6-1", "Other", None, unobservable_note="needs the admin console")
    assert c.provenance is Provenance.NOT_VERIFIABLE and c.note == "needs the admin console"
