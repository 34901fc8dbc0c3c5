"""The command-line side of issue 14: ``--format``, ``--sign``/``--sign-cert``, ``--redact`` and
``dcsaudit verify``. Options are checked before the audit runs (a bad key is exit 2 before any packet)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcsaudit.export import DEFAULT_FORMATS, parse_formats


@dataclass(frozen=True)
class Publish:
    """What to do with a finished report: which formats, redacted or not, signed by whom."""

    formats: tuple[str, ...] = DEFAULT_FORMATS
    signer: Any = None  # bundle.Signer (imported lazily: cryptography loads only when signing)
    redact: bool = False
    config: Any = None  # the DeploymentConfig, when the run had one (scan)
    redactor: Any = None  # redact.Redactor: the run-wide mapping the log filter already uses

    def prepare(self, report: Any) -> Any:
        """The report to render (redacted with --redact). The collector's streamed files (``listen``:
        messages.jsonl, received.log) are redacted in place here too, with the same mapping."""
        if not self.redact:
            return report
        from dcsaudit.export.redact import collect_collector_files, redact, redact_collector_files

        redactor = self.redactor if self.redactor is not None else _new_redactor(self.config)
        files = [] if (trail := _collector_dir(report)) is None else collect_collector_files(redactor, trail)
        redacted, redactor = redact(report, self.config, into=redactor)
        redact_collector_files(redactor, files)
        return redacted

    def seal(self, report: Any, out: Path, outputs: dict[str, Path]) -> dict[str, Path]:
        """manifest.json + manifest.sig over the outputs and the collector's files kept in ``out``."""
        from dcsaudit.export.bundle import config_digest, write_bundle
        from dcsaudit.export.redact import MESSAGES_FILE, RECEIVED_FILE

        files = list(outputs.values())
        if _collector_dir(report) is not None:
            files += [p for p in (out / MESSAGES_FILE, out / RECEIVED_FILE) if p.is_file()]
        return write_bundle(report, out, files, self.signer, config_digest(self.config), self.redact)


def _collector_dir(report: Any) -> Path | None:
    """Where ``listen``'s collector kept messages.jsonl / received.log, when it kept them."""
    trail = getattr(report, "audit_trail", None)
    kept = trail.messages_file or trail.received_file if trail is not None else None
    return Path(kept).parent if kept else None


def _new_redactor(config: Any) -> Any:
    from dcsaudit.export.redact import Redactor

    redactor = Redactor()
    redactor.add_config(config)
    return redactor


def from_args(args: argparse.Namespace, config: Any = None) -> Publish:
    """ConfigError (exit 2) for an unknown format or a key that cannot sign."""
    from dcsaudit.config import ConfigError

    try:
        formats = parse_formats(getattr(args, "formats", None) or ",".join(DEFAULT_FORMATS))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    signer = None
    if getattr(args, "sign", None) is not None:
        from dcsaudit.export.bundle import BundleError, load_signer

        try:
            signer = load_signer(args.sign, getattr(args, "sign_cert", None))
        except BundleError as exc:
            raise ConfigError(str(exc)) from None
    elif getattr(args, "sign_cert", None) is not None:
        raise ConfigError("--sign-cert needs --sign KEYFILE")
    if "pdf" in formats:  # fpdf2's and the models' import, in a process of its own, during the audit
        from dcsaudit.export.pdf import start_worker

        start_worker()
    redactor = None
    if getattr(args, "redact", False):
        from dcsaudit import logs

        # Installed before the audit logs its first target: -v lines use the report's placeholders.
        redactor = _new_redactor(config)
        logs.set_redaction(redactor)
    return Publish(formats=formats, signer=signer, redact=redactor is not None, config=config, redactor=redactor)


def run_verify(args: argparse.Namespace) -> int:
    import sys

    from dcsaudit.config import ConfigError
    from dcsaudit.export.bundle import MANIFEST, BundleError, load_public_key, verify

    if not (args.dir / MANIFEST).is_file():
        raise ConfigError(f"verify: {args.dir} has no {MANIFEST} (was the run signed with --sign?)")
    try:
        key = load_public_key(args.public_key, args.cert)
    except BundleError as exc:
        raise ConfigError(f"verify: {exc}") from None
    verdict = verify(args.dir, key)
    for line in verdict.lines:
        print(f"dcsaudit verify: {line}", file=sys.stdout if verdict.ok else sys.stderr)
    if not verdict.ok:
        print(f"dcsaudit verify: FAILED ({args.dir})", file=sys.stderr)
        return 1
    print(f"dcsaudit verify: OK ({args.dir})")
    return 0
