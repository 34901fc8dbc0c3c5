"""Logging for every command: ``-v`` (stage timings, retries), ``-vv`` (every probe), ``--log-file``.

Only dcsaudit's own loggers are raised above WARNING: pynetdicom and sslyze log PDUs and handshakes
at DEBUG, and a PDU can carry a User Identity passcode. Every secret the config resolves is also
registered here, and each log record is redacted before it is written.

With ``--redact`` (issue 14) the same filter also replaces every address, host name and AE title of the
deployment by the run's placeholders (``host-1``, ``AE-1``): ``set_redaction`` installs the run-wide
mapping (``dcsaudit.export.redact.Redactor``) before the audit logs its first target, and
``seed_redaction`` adds a config made later (the demo's). Tracebacks are redacted as well.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any, Protocol


class Redaction(Protocol):
    def log_text(self, message: str) -> str: ...

    def add_config(self, config: Any) -> None: ...


_SECRETS: set[str] = set()
_LOCK = threading.Lock()
REDACTED = "[redacted]"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_REDACTION: Redaction | None = None


def register_secret(value: str) -> None:
    """A resolved secret: never written to a log (values shorter than 4 characters would redact
    ordinary words and are too weak to be worth hiding from a log reader anyway)."""
    if len(value) >= 4:
        with _LOCK:
            _SECRETS.add(value)


def set_redaction(redaction: Redaction | None) -> None:
    """The run's ``--redact`` mapping for every log line from now on (None: off)."""
    global _REDACTION
    _REDACTION = redaction


def seed_redaction(config: Any) -> None:
    """A config the run made itself (the demo's): its hosts and AE titles are redacted in logs too."""
    if _REDACTION is not None:
        _REDACTION.add_config(config)


def _clean(text: str, secrets: list[str], redaction: Redaction | None) -> str:
    for s in secrets:
        text = text.replace(s, REDACTED)
    return redaction.log_text(text) if redaction is not None else text


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        with _LOCK:
            secrets = list(_SECRETS)
        redaction = _REDACTION
        if secrets or redaction is not None:
            record.msg, record.args = _clean(record.getMessage(), secrets, redaction), None
            if record.exc_info and not record.exc_text:  # the formatter uses exc_text when it is set
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = _clean(record.exc_text, secrets, redaction)
            if record.stack_info:
                record.stack_info = _clean(record.stack_info, secrets, redaction)
        return True


def setup(verbose: int, log_file: Path | None) -> None:
    """Configure the ``dcsaudit`` logger tree once per command. Raises OSError if the file cannot be opened."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    set_redaction(None)  # a new command: --redact installs its own mapping once it knows the config
    logger = logging.getLogger("dcsaudit")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(level)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(min(level, logging.INFO))  # a log file is for after the fact: at least INFO
        handlers.append(file_handler)
    for h in handlers:
        h.setFormatter(formatter)
        h.addFilter(RedactSecrets())
        logger.addHandler(h)
    logger.setLevel(min(h.level for h in handlers))
    logger.propagate = False
    # Other libraries' warnings reach stderr through logging's last-resort handler: filter those too.
    last = logging.lastResort
    if last is not None and not any(isinstance(f, RedactSecrets) for f in last.filters):
        last.addFilter(RedactSecrets())
