"""Policies: which findings gate the exit status, and severity overrides.

Policy files live in ``configs/policy-<name>.yaml`` (or any path). The code holds no policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dcsaudit.config import ConfigError, did_you_mean, first_error, yaml_problem
from dcsaudit.models.core import Finding, Severity

SEVERITY_ORDER: dict[str, int] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    fail_at_severity: Severity | None = Field(
        default="high", description="a failed finding at or above this severity fails the audit")
    gate: list[str] = Field(default_factory=list, description="check ids that fail the audit whatever their severity")
    ignore: list[str] = Field(default_factory=list, description="check ids that never gate")
    severity: dict[str, Severity] = Field(default_factory=dict, description="check id -> severity override")
    on_error: Literal["fail", "ignore"] = Field(
        default="fail", description="a gating check that could not run fails the audit (it never passes)")

    def gates(self, check_id: str, severity: Severity) -> bool:
        if check_id in self.ignore:
            return False
        if check_id in self.gate:
            return True
        return self.fail_at_severity is not None and SEVERITY_ORDER[severity] >= SEVERITY_ORDER[self.fail_at_severity]

    def is_failing(self, finding: Finding) -> bool:
        if not finding.gating:
            return False
        return finding.status == "fail" or (finding.status == "error" and self.on_error == "fail")

    def check_ids(self, known: Iterable[str]) -> None:
        """A check id the catalogue does not have is a config error: a misspelt ``ignore`` or ``gate``
        entry would otherwise silently change nothing."""
        known = sorted(known)
        for where, ids in (("gate", self.gate), ("ignore", self.ignore), ("severity", list(self.severity))):
            for check_id in ids:
                if check_id not in known:
                    raise ConfigError(f"policy {self.name}: {where}: unknown check id {check_id!r}"
                                      f"{did_you_mean(check_id, known)}")


def load_policy(name_or_path: str, base_dir: Path | None = None) -> Policy:
    """A policy by name (``configs/policy-<name>.yaml`` shipped with dcsaudit) or by path."""
    candidates: list[Path] = []
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        candidates.append(p if p.is_absolute() or base_dir is None else base_dir / p)
        candidates.append(p)
    try:
        text = next(c.read_text(encoding="utf-8") for c in candidates if c.is_file())
    except StopIteration:
        shipped = resources.files("dcsaudit.configs") / f"policy-{name_or_path}.yaml"
        if not shipped.is_file():
            raise ConfigError(f"policy: no policy named {name_or_path!r} (no configs/policy-{name_or_path}.yaml "
                              "and no such file)") from None
        text = shipped.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"policy {name_or_path}: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"policy {name_or_path}: the top level must be a mapping")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"policy {name_or_path}: {first_error(exc, Policy)}") from None
