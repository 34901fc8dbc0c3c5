"""The catalogue of checks: every module in this package is imported (in name order), and each
``@check`` function in it registers itself. A new check is one function in one file here."""

import importlib
import pkgutil

from dcsaudit.checks.base import REGISTRY, AuditData, CheckSpec, Verdict, check

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["REGISTRY", "AuditData", "CheckSpec", "Verdict", "check"]
