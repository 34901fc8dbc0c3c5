"""The first schema: runs, endpoints, facts and findings.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "dcsaudit_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("command", sa.String(20), nullable=False),
        sa.Column("policy", sa.String(200), nullable=False),
        sa.Column("tool_version", sa.String(40), nullable=False),
        sa.Column("exit_status", sa.Integer, nullable=True),
        sa.Column("complete", sa.Boolean, nullable=False),
        *(sa.Column(name, sa.Integer, nullable=False) for name in
          ("endpoints", "passed", "failed", "errors", "not_applicable", "gating", "suppressed")),
        sa.Column("out_dir", sa.String(1000), nullable=True),
    )
    op.create_index("ix_dcsaudit_runs_deployment", "dcsaudit_runs", ["deployment"])

    def run_fk() -> sa.Column[int]:
        return sa.Column("run_id", sa.Integer, sa.ForeignKey("dcsaudit_runs.id", ondelete="CASCADE"), nullable=False)

    op.create_table(
        "dcsaudit_endpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        run_fk(),
        sa.Column("fingerprint", sa.String(40), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("protocol", sa.String(3), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("service", sa.String(20), nullable=False),
    )
    op.create_index("ix_dcsaudit_endpoints_run", "dcsaudit_endpoints", ["run_id", "fingerprint"])
    op.create_table(
        "dcsaudit_facts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        run_fk(),
        sa.Column("fingerprint", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("ix_dcsaudit_facts_run", "dcsaudit_facts", ["run_id", "fingerprint"])
    op.create_table(
        "dcsaudit_findings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        run_fk(),
        sa.Column("fingerprint", sa.String(40), nullable=False),
        sa.Column("check_id", sa.String(100), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("gating", sa.Boolean, nullable=False),
        sa.Column("suppressed", sa.Boolean, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
    )
    op.create_index("ix_dcsaudit_findings_run", "dcsaudit_findings", ["run_id", "fingerprint"])


def downgrade() -> None:
    for table in ("dcsaudit_findings", "dcsaudit_facts", "dcsaudit_endpoints", "dcsaudit_runs"):
        op.drop_table(table)
