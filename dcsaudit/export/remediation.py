"""Remediation texts per check, kept as data (dcsaudit/data/remediation.yaml) with their references."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from dcsaudit import packaged_yaml


@cache
def remediation() -> dict[str, dict[str, Any]]:
    """check id -> {"text": str, "references": [str]}."""
    raw = packaged_yaml.load((resources.files("dcsaudit.data") / "remediation.yaml").read_text(encoding="utf-8"))
    return {str(k): {"text": str(v["text"]), "references": [str(r) for r in v.get("references", [])]}
            for k, v in (raw or {}).items()}


SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")


def by_severity(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Serialised findings, most severe first (stable within a severity)."""
    rank = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    return sorted(findings, key=lambda f: rank.get(str(f["severity"]), len(rank)))
