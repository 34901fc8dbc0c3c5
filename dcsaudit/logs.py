"""Logging for every command: ``-v`` (stage timings, retries), ``-vv`` (every probe), ``--log-file``.

Only dcsaudit's own loggers are raised above WARNING: pynetdicom and sslyze log PDUs and handshakes
at DEBUG, and a PDU can carry a User Identity passcode. Every secret the config resolves is also
registered here, and each log record is redacted before it is written.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
REDACTED = "[redacted]"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def register_secret(value: str) -> None:
    """A resolved secret: never written to a log (values shorter than 4 characters would redact
    ordinary words and are too weak to be worth hiding from a log reader anyway)."""
    if len(value) >= 4:
        with _LOCK:
            _SECRETS.add(value)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        with _LOCK:
            secrets = list(_SECRETS)
        if secrets:
            message = record.getMessage()
            for s in secrets:
                message = message.replace(s, REDACTED)
            record.msg, record.args = message, None
        return True


def setup(verbose: int, log_file: Path | None) -> None:
    """Configure the ``dcsaudit`` logger tree once per command. Raises OSError if the file cannot be opened."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
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
