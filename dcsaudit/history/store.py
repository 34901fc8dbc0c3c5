"""The history store: every run, endpoint, fact and finding, keyed by stable fingerprints.

SQLAlchemy 2 over SQLite (one file, the default) or PostgreSQL through psycopg 3 (one store for a fleet of
scanners). The schema is created and upgraded by the Alembic migrations in ``migrations/``; on PostgreSQL an
advisory lock serialises the upgrade, so scanners that start together do not race to create the tables.
A run is written in one transaction: a reader sees all of it or none of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from dcsaudit.errors import ConfigError

if TYPE_CHECKING:
    from dcsaudit.models.report import Report

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x0DC5A0D1  # pg_advisory_xact_lock key: one schema upgrade at a time per database
_SECRET_REF = re.compile(r"^\{\s*(env|file)\s*:\s*(.+?)\s*\}$")


class StoreError(Exception):
    """The store could not be opened, upgraded, read or written (the message never holds a password)."""


# SQLAlchemy Core tables (the ORM's import alone cost ≈ 0.2 s of every scan, issue 16). The schema is
# migrations/versions; tests/test_history_store.py checks these tables build the same one.
METADATA = MetaData()


def _run_fk() -> Column[int]:
    return Column("run_id", Integer, ForeignKey("dcsaudit_runs.id", ondelete="CASCADE"), nullable=False)


RUNS = Table(
    "dcsaudit_runs", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment", String(200), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("stored_at", DateTime(timezone=True), nullable=False),
    Column("command", String(20), nullable=False),
    Column("policy", String(200), nullable=False),
    Column("tool_version", String(40), nullable=False),
    Column("exit_status", Integer, nullable=True),
    Column("complete", Boolean, nullable=False),
    *(Column(name, Integer, nullable=False) for name in
      ("endpoints", "passed", "failed", "errors", "not_applicable", "gating", "suppressed")),
    Column("out_dir", String(1000), nullable=True),
)
ENDPOINTS = Table(
    "dcsaudit_endpoints", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _run_fk(),
    Column("fingerprint", String(40), nullable=False),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("protocol", String(3), nullable=False),
    Column("state", String(10), nullable=False),
    Column("service", String(20), nullable=False),
    Index("ix_dcsaudit_endpoints_run", "run_id", "fingerprint"),
)
FACTS = Table(
    "dcsaudit_facts", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _run_fk(),
    Column("fingerprint", String(40), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("path", String(200), nullable=False),
    Column("value", Text, nullable=False),
    Index("ix_dcsaudit_facts_run", "run_id", "fingerprint"),
)
FINDINGS = Table(
    "dcsaudit_findings", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _run_fk(),
    Column("fingerprint", String(40), nullable=False),
    Column("check_id", String(100), nullable=False),
    Column("target", String(300), nullable=False),
    Column("status", String(20), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("gating", Boolean, nullable=False),
    Column("suppressed", Boolean, nullable=False),
    Column("title", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Index("ix_dcsaudit_findings_run", "run_id", "fingerprint"),
)


def resolve_url(value: str) -> str:
    """A store URL, or ``{env: NAME}`` / ``{file: PATH}`` naming where it is (it may hold a password: a
    Kubernetes Secret mounted as a file keeps it off the command line and out of ``ps``)."""
    m = _SECRET_REF.match(value.strip())
    if not m:
        return value
    from dcsaudit.config import SecretRef

    ref = SecretRef.model_validate({m.group(1): m.group(2)})
    try:
        return ref.resolve().get_secret_value()
    except ConfigError as exc:
        raise ConfigError(f"--store: {exc}") from None


def describe(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable store URL>"


def _utc(dt: datetime) -> datetime:
    """SQLite gives naive datetimes back: every stored time is UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True)
class RunSummary:
    id: int
    deployment: str
    started_at: datetime
    finished_at: datetime
    command: str
    policy: str
    exit_status: int | None
    complete: bool
    endpoints: int
    passed: int
    failed: int
    errors: int
    not_applicable: int
    gating: int
    suppressed: int

    def as_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["started_at"] = self.started_at.isoformat()
        d["finished_at"] = self.finished_at.isoformat()
        return d


@dataclass(frozen=True)
class StoredFact:
    subject: str
    path: str
    value: str  # canonical JSON


@dataclass(frozen=True)
class StoredFinding:
    check_id: str
    target: str
    status: str
    severity: str
    gating: bool
    suppressed: bool
    title: str
    summary: str


@dataclass(frozen=True)
class RunSnapshot:
    run: RunSummary
    facts: dict[str, StoredFact]  # fingerprint -> fact
    findings: dict[str, StoredFinding]  # fingerprint -> finding


def _summary(r: Any) -> RunSummary:  # a row of RUNS
    return RunSummary(id=r.id, deployment=r.deployment, started_at=_utc(r.started_at),
                      finished_at=_utc(r.finished_at), command=r.command, policy=r.policy,
                      exit_status=r.exit_status, complete=r.complete, endpoints=r.endpoints, passed=r.passed,
                      failed=r.failed, errors=r.errors, not_applicable=r.not_applicable, gating=r.gating,
                      suppressed=r.suppressed)


class Store:
    """An open, migrated store. ``open_store`` makes one; ``close`` releases its connections."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, report: Report, out_dir: Path | None = None) -> int:
        """Store one run; returns its id in this store."""
        from dcsaudit.history.fingerprints import run_rows

        return self.save_rows(run_rows(report, out_dir))

    def save_rows(self, rows: dict[str, Any]) -> int:
        """Store one run given as ``run_rows`` (the history worker gets only these, as JSON)."""
        run = dict(rows["run"], stored_at=datetime.now(UTC))
        for when in ("started_at", "finished_at"):
            run[when] = _utc(datetime.fromisoformat(run[when]))
        try:
            with self.engine.begin() as conn:
                key = conn.execute(insert(RUNS).values(**run)).inserted_primary_key
                assert key is not None
                rid = int(key[0])
                # Bulk inserts (one executemany per table): a 50-endpoint run stays in milliseconds.
                for table, name in ((ENDPOINTS, "endpoints"), (FACTS, "facts"), (FINDINGS, "findings")):
                    if rows[name]:
                        conn.execute(insert(table), [dict(r, run_id=rid) for r in rows[name]])
            return rid
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store the run: {_short(exc)}") from None

    def runs(self, deployment: str | None = None, limit: int | None = None) -> list[RunSummary]:
        """Runs, oldest first (the newest ``limit`` when given)."""
        q = select(RUNS).order_by(RUNS.c.id.desc())
        if deployment is not None:
            q = q.where(RUNS.c.deployment == deployment)
        if limit is not None:
            q = q.limit(limit)
        try:
            with self.engine.connect() as conn:
                rows = [_summary(r) for r in conn.execute(q)]
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the store: {_short(exc)}") from None
        return rows[::-1]

    def deployments(self) -> list[str]:
        with self.engine.connect() as conn:
            return sorted(conn.scalars(select(RUNS.c.deployment).distinct()))

    def snapshot(self, run_id: int) -> RunSnapshot:
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).first()
                if row is None:
                    raise StoreError(f"no run {run_id} in the store")
                f, g = FACTS.c, FINDINGS.c
                facts = {r.fingerprint: StoredFact(r.subject, r.path, r.value) for r in conn.execute(
                    select(f.fingerprint, f.subject, f.path, f.value).where(f.run_id == run_id))}
                findings = {r.fingerprint: StoredFinding(r.check_id, r.target, r.status, r.severity, r.gating,
                                                         r.suppressed, r.title, r.summary)
                            for r in conn.execute(select(
                                g.fingerprint, g.check_id, g.target, g.status, g.severity, g.gating, g.suppressed,
                                g.title, g.summary).where(g.run_id == run_id))}
                return RunSnapshot(_summary(row), facts, findings)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read the store: {_short(exc)}") from None

    def count_runs(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count(RUNS.c.id))) or 0)


def _short(exc: SQLAlchemyError) -> str:
    """The driver's first line, without SQL or parameters (which may hold finding text)."""
    orig = getattr(exc, "orig", None)
    msg = str(orig if orig is not None else exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("--store: not a database URL (sqlite:///PATH or postgresql+psycopg://…)") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the history store's directory: {exc.strerror}") from None
        engine = create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ConfigError("--store: PostgreSQL through psycopg 3: use postgresql+psycopg://…")
        return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    raise ConfigError(f"--store: unsupported database {backend!r} (sqlite or postgresql+psycopg)")


# The newest revision in migrations/versions (tests/test_history_store.py checks it against Alembic's
# head): a store already there is not handed to Alembic, whose import costs ≈ 0.2 s per run (issue 16).
HEAD_REVISION = "0001"


def _at_head(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:  # no such table yet: a new store
        return False
    return [r[0] for r in rows] == [HEAD_REVISION]


def migrate(engine: Engine, *, alembic_only: bool = False) -> None:
    """Bring the schema to the newest Alembic revision.

    An empty database gets the models' tables and is stamped with the head revision, Alembic's own
    recipe for a new database ("create_all, then stamp"); tests/test_history_store.py checks the result
    equals what the migrations build. Only an older schema is upgraded through Alembic.
    """
    if not alembic_only and _at_head(engine):
        return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        existing = set(inspect(conn).get_table_names())
        if not alembic_only and not existing & ({"alembic_version"} | set(METADATA.tables)):
            METADATA.create_all(conn)
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                              "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD_REVISION})
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_store(url: str) -> Store:
    """Connect, create or upgrade the schema, and return the store. Errors never show the password."""
    engine = _engine(resolve_url(url))
    try:
        migrate(engine)
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        why = _short(exc) if isinstance(exc, SQLAlchemyError) else exc.strerror
        raise StoreError(f"cannot open the history store {describe(str(engine.url))}: {why}") from None
    return Store(engine)
