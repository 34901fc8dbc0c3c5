"""The provenance marks every output shows in a cell, and their legend (one place for all formats:
annex.md/html through jinja2, annex.docx, annex.pdf)."""

from __future__ import annotations

PROVENANCE_MARK = {
    "verified": "✔",
    "declared": "D",
    "contradicted": "✘",
    "not_verifiable": "—",
    "not_observed": "∅",
    "label": "",
}
PROVENANCE_TEXT = {
    "verified": "verified on the wire",
    "declared": "declared by the vendor, not verifiable from the network",
    "contradicted": "declared value contradicted by observation",
    "not_verifiable": "not verifiable from the network",
    "not_observed": "observable, but not observed in this audit",
}
