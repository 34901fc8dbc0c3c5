"""Audit-trail (syslog) results (issue 5). Contract names are relied on by scripts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from dcsaudit.models.core import Model


class AuditMessage(Model):
    transport: Literal["tls", "udp"]
    peer: str
    received_at: datetime
    pri: int | None = None
    msgid: str | None = None
    event_id: str | None = None
    event_type_codes: list[str] = Field(default_factory=list)
    schema_valid: bool = False
    errors: list[str] = Field(default_factory=list)
    size: int = 0


class AuditTrail(Model):
    messages: list[AuditMessage] = Field(default_factory=list)
