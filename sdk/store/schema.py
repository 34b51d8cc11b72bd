"""The local store: one SQLite file, its schema as named migrations, and how it is opened.

Tables (tokens in non-overlapping buckets, money in integer pico-dollars, times in Unix ns, UTC):

- ``runs``: one row per execution of a task (a task span).
- ``calls``: one row per LLM call, with the run it belongs to (NULL outside any task).
- ``steps``: tool calls and ``step`` blocks.
- ``outcomes``: every outcome ever recorded, inline or late; the latest per task wins at report time.

A shipped migration is never edited: add a new one.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import StoreError
from .attr_rollups import create_tables_sql as attribute_tables_sql
from .attr_rollups import rebuild as rebuild_attributes
from .backend import LOCK_WAIT_S, is_url
from .losses import dropped_spans as count_dropped
from .losses import loss_file_for
from .rollups import (
    create_tables_sql,
    ended_and_buckets_sql,
    mark_all_sql,
    outcome_ranks_sql,
    provider_parts_sql,
    sqlite_triggers,
)
from .rollups import refresh as refresh_rollups
from .run_totals import backfill, create_run_sums, create_table
from .stale_runs import marks_sql
from .stale_runs import sqlite_triggers as sums_triggers

if TYPE_CHECKING:
    import sqlite_utils
    from sqlite_utils.migrations import Migrations

__all__ = [
    "SESSION_COST_SQL", "TOOL_COST_SQL", "UNITCOST_TABLES", "database", "default_db_path",
    "dropped_spans", "migrations", "open_connection", "open_store", "unusable",
]


@dataclass
class Migration:
    name: str
    fn: Callable[[Any], None]
    transactional: bool = True


class MigrationList:
    """The store's named migrations, in order, registered as sqlite-utils' ``Migrations`` takes them
    (``@migrations(name=...)``). sqlite-utils, which records and applies them, is imported only when a
    store lacks one: opening a store that has them all needs their names alone, and sparing the import
    is ~50 ms of every command's start-up (`unitcost show`, `unitcost report`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._migrations: list[Migration] = []
        self._applier: Migrations | None = None

    def __call__(self, *, name: str | None = None, transactional: bool = True) -> Callable[[Any], Any]:
        def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
            migration = Migration(name or fn.__name__, fn, transactional)
            if any(m.name == migration.name for m in self._migrations):
                raise ValueError(f"migration {migration.name!r} is registered twice")
            self._migrations.append(migration)
            self._applier = None
            return fn

        return register

    def _sqlite_utils(self) -> Migrations:
        if self._applier is None:
            # Here: only a store that lacks a migration needs sqlite-utils' (start-up time of every command).
            from sqlite_utils.migrations import Migrations

            applier = Migrations(self.name)
            for m in self._migrations:
                applier(name=m.name, transactional=m.transactional)(m.fn)
            self._applier = applier
        return self._applier

    def has_all(self, conn: sqlite3.Connection, tables: set[str]) -> bool:
        """Whether the store on `conn` has every migration (read with the connection alone)."""
        if MIGRATIONS_TABLE not in tables:
            return False
        done = {r[0] for r in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ?", [self.name])}
        return all(m.name in done for m in self._migrations)

    def names_applied(self, conn: sqlite3.Connection) -> list[str]:
        """The names of the migrations the store on `conn` has, in the order they were applied."""
        table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [MIGRATIONS_TABLE])
        if not table.fetchone():
            return []
        done = conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ? ORDER BY rowid", [self.name])
        return [name for (name,) in done]

    def unknown(self, conn: sqlite3.Connection) -> tuple[str, ...]:
        """The migrations the store on `conn` has that this list lacks: a newer unitcost's, in order."""
        known = {m.name for m in self._migrations}
        return tuple(name for name in self.names_applied(conn) if name not in known)

    def pending(self, db: sqlite_utils.Database) -> list[Any]:
        return self._sqlite_utils().pending(db)

    def applied(self, db: sqlite_utils.Database) -> list[Any]:
        return self._sqlite_utils().applied(db)

    def apply(self, db: sqlite_utils.Database, *, stop_before: str | Iterable[str] | None = None) -> None:
        self._sqlite_utils().apply(db, stop_before=stop_before)


MIGRATIONS_TABLE = "_sqlite_migrations"  # where sqlite-utils records the migrations applied
migrations = MigrationList("unitcost")


@migrations(name="m001_initial")
def _m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            parent_span_id TEXT,
            parent_run_id TEXT,
            kind TEXT NOT NULL,
            key TEXT,
            service TEXT,
            started_ns INTEGER NOT NULL,
            ended_ns INTEGER NOT NULL,
            error_type TEXT,
            attributes TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX runs_started ON runs(started_ns);
        CREATE INDEX runs_kind_key ON runs(kind, key);

        CREATE TABLE calls (
            span_id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            parent_span_id TEXT,
            run_id TEXT,
            started_ns INTEGER NOT NULL,
            ended_ns INTEGER NOT NULL,
            provider TEXT NOT NULL,
            operation TEXT NOT NULL,
            model TEXT NOT NULL,
            response_model TEXT,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            cost_pico INTEGER,
            reasoning_cost_pico INTEGER,
            price_source TEXT,
            estimated INTEGER NOT NULL DEFAULT 0,
            streamed INTEGER NOT NULL DEFAULT 0,
            incomplete INTEGER NOT NULL DEFAULT 0,
            error_type TEXT,
            service_tier TEXT
        );
        CREATE INDEX calls_run ON calls(run_id);
        CREATE INDEX calls_started ON calls(started_ns);

        CREATE TABLE steps (
            span_id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            parent_span_id TEXT,
            run_id TEXT,
            type TEXT NOT NULL,
            name TEXT NOT NULL,
            started_ns INTEGER NOT NULL,
            ended_ns INTEGER NOT NULL,
            cost_pico INTEGER,
            error_type TEXT
        );
        CREATE INDEX steps_run ON steps(run_id);

        CREATE TABLE outcomes (
            id INTEGER PRIMARY KEY,
            recorded_ns INTEGER NOT NULL,
            run_id TEXT,
            kind TEXT,
            key TEXT,
            label TEXT NOT NULL,
            success INTEGER NOT NULL,
            value_pico INTEGER,
            source TEXT NOT NULL,
            origin TEXT UNIQUE
        );
        CREATE INDEX outcomes_run ON outcomes(run_id);
        CREATE INDEX outcomes_key ON outcomes(key);
        """
    )
    # Buckets do not overlap: calls.input_tokens is UNCACHED input only and calls.output_tokens is
    # visible output only (reasoning is apart). outcomes.origin is the span that carried an outcome,
    # so replaying the same spans never adds an outcome twice.


@migrations(name="m002_calls_retries")
def _m002_calls_retries(db: sqlite_utils.Database) -> None:
    # How many times the provider SDK retried the call before its final answer or error.
    db.execute("ALTER TABLE calls ADD COLUMN retries INTEGER NOT NULL DEFAULT 0")


@migrations(name="m003_calls_cache_write_retention")
def _m003_calls_cache_write_retention(db: sqlite_utils.Database) -> None:
    # OpenAI Responses splits cache writes by retention (30 minutes, 12 hours). These are PARTS of
    # cache_write_tokens, not buckets of their own: genai-prices has no per-retention OpenAI rate, so
    # they are priced as cache writes and kept here for whoever wants to re-price them.
    db.execute("ALTER TABLE calls ADD COLUMN cache_write_30m_tokens INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE calls ADD COLUMN cache_write_12h_tokens INTEGER NOT NULL DEFAULT 0")


@migrations(name="m004_calls_server_tool_requests")
def _m004_calls_server_tool_requests(db: sqlite_utils.Database) -> None:
    # Server-side tool requests (Anthropic's usage.server_tool_use): web searches carry a fee per
    # request, included in cost_pico; web fetches cost only their tokens. price_modifiers is a JSON
    # object of what the response reported that changes or may change the price besides
    # service_tier ({"processing": "batch", "speed": "fast", "inference_geo": "us"}); NULL when none.
    db.execute("ALTER TABLE calls ADD COLUMN web_search_requests INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE calls ADD COLUMN web_fetch_requests INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE calls ADD COLUMN price_modifiers TEXT")


@migrations(name="m007_run_totals")
def _m007_run_totals(db: sqlite_utils.Database) -> None:
    # Per-run sums of the calls, so reports read one row per run and model, not every call.
    create_table(db.conn)


@migrations(name="m008_dropped_spans")
def _m008_dropped_spans(db: sqlite_utils.Database) -> None:
    # Spans that never became rows, so that no record is lost silently: `reason` is "queue_full" (the
    # exporter's bounded queue was full and the caller was not made to wait) or "export_failed" (the
    # store refused a batch: disk full, locked past the busy timeout). One row each time an exporter
    # noticed new drops; `unitcost doctor` and every report show the sum.
    db.execute(
        "CREATE TABLE dropped_spans (id INTEGER PRIMARY KEY, recorded_ns INTEGER NOT NULL, "
        "reason TEXT NOT NULL, count INTEGER NOT NULL, service TEXT)"
    )
    db.execute("CREATE INDEX dropped_spans_recorded ON dropped_spans(recorded_ns)")


@migrations(name="m009_call_content")
def _m009_call_content(db: sqlite_utils.Database) -> None:
    # Prompt and completion text, written only with configure(capture_content=True) (or
    # OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT), after the redaction hook: JSON in the
    # OpenTelemetry GenAI shape of gen_ai.input.messages / gen_ai.output.messages. Kept apart from
    # `calls` so a store without content has no content columns to leak.
    db.execute("CREATE TABLE call_content (span_id TEXT PRIMARY KEY, input_messages TEXT, output_messages TEXT)")


@migrations(name="m010_run_sums")
def _m010_run_sums(db: sqlite_utils.Database) -> None:
    # The same sums per run over all its models (reports not grouped by model read only these),
    # then both tables filled for the calls already stored.
    create_run_sums(db.conn)
    backfill(db.conn)


@migrations(name="m011_calls_usage_parts")
def _m011_calls_usage_parts(db: sqlite_utils.Database) -> None:
    # The parts of a call's usage priced apart (Anthropic's compaction and advisor iterations): JSON,
    # a list of {"kind", "model", "input_tokens", "cache_read_tokens", "cache_write_tokens",
    # "output_tokens", "cost_pico"}. Their tokens are also in the call's bucket columns.
    db.execute("ALTER TABLE calls ADD COLUMN usage_parts TEXT")


@migrations(name="m012_runtime_cost")
def _m012_runtime_cost(db: sqlite_utils.Database) -> None:
    # What a hosted runtime charges for a run's wall time (the price file's [[runtime]] entry for its
    # kind), priced by the store writer: NULL when no entry prices the run. Session blocks
    # (`unitcost.session`) are `steps` rows of type 'session' whose cost_pico is the same kind of
    # charge; reports add both up as `runtime_cost_usd`, apart from tool costs.
    db.execute("ALTER TABLE runs ADD COLUMN runtime_cost_pico INTEGER")


@migrations(name="m013_settings")
def _m013_settings(db: sqlite_utils.Database) -> None:
    # What `configure()` asked that the CLI needs later (unitcost.store.settings): name -> value,
    # e.g. user_attribute -> customer (the task attribute that names the user, for `report --users`).
    db.execute("CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migrations(name="m014_call_energy")
def _m014_call_energy(db: sqlite_utils.Database) -> None:
    # Each LLM call's energy (µWh = 1e-9 kWh) and emissions (µg = 1e-9 kg CO2eq) as a min..max range,
    # estimated by the store writer (ecologits, or a [[energy]] figure of unitcost.toml); NULL when
    # unestimated (a model ecologits does not know, or ecologits not installed), never 0.
    # energy_source says how: "ecologits 0.11.3", "unitcost.toml". The per-run sums get the same
    # columns plus unestimated_energy_calls, then are computed again for the calls already stored.
    for column in ("energy_uwh_min", "energy_uwh_max", "gwp_ug_min", "gwp_ug_max"):
        db.execute(f"ALTER TABLE calls ADD COLUMN {column} INTEGER")
    db.execute("ALTER TABLE calls ADD COLUMN energy_source TEXT")
    # (m007 and m010 create the sums tables from today's column list, so a store made from scratch has
    # these columns already: only an older store's tables get them here.)
    for table in ("run_totals", "run_sums"):
        have = set(db[table].columns_dict)
        for column in ("energy_uwh_min", "energy_uwh_max", "gwp_ug_min", "gwp_ug_max", "unestimated_energy_calls"):
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    backfill(db.conn)


@migrations(name="m015_task_rollups")
def _m015_task_rollups(db: sqlite_utils.Database) -> None:
    # One row a task (and a task and model) with what the reports read, kept current by triggers and
    # the store writer (unitcost.store.rollups), then made for the tasks already stored.
    for statement in (*create_tables_sql("sqlite"), *sqlite_triggers()):
        db.execute(statement)
    db.execute(mark_all_sql())
    refresh_rollups(db.conn.execute, "sqlite")


@migrations(name="m016_stale_run_marks")
def _m016_stale_run_marks(db: sqlite_utils.Database) -> None:
    # The runs whose per-run sums are stale, marked by triggers on calls (unitcost.store.stale_runs):
    # a report's freshness check reads one row instead of counting the calls.
    for statement in (*marks_sql("sqlite"), *sums_triggers()):
        db.execute(statement)


@migrations(name="m017_task_rollup_ended")
def _m017_task_rollup_ended(db: sqlite_utils.Database) -> None:
    # Each task's runs' last end (the task list sorts by duration from an index, not by grouping the
    # runs on every request), and each task's (and task and model's) start week and month, with the
    # indexes that read a week's or a month's k-th cost in order (unitcost.store.rollups). A store
    # whose m015 ran after this was written has the columns already; the values are made either way.
    # And the runs nested in a run found by index (`show` and the UI's task page walk a run's subtree
    # level by level: without it each level reads every run).
    for table, columns in (("task_rollup", ("ended_ns", "start_week", "start_month")),
                           ("task_model_rollup", ("start_week", "start_month"))):
        have = set(db[table].columns_dict)
        for column in columns:
            if column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    for statement in ended_and_buckets_sql("sqlite"):
        db.execute(statement)
    # (partial: most runs are nobody's child, so the index stays small)
    db.execute("CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_run_id) WHERE parent_run_id IS NOT NULL")


def _add_model_column_then(db: sqlite_utils.Database, column: str, sql_type: str, statements: list[str]) -> None:
    """A column of task_model_rollup added when missing (a store whose m015 ran after the column was
    written has it already), then the statements that fill it and index it."""
    if column not in set(db["task_model_rollup"].columns_dict):
        db.execute(f"ALTER TABLE task_model_rollup ADD COLUMN {column} {sql_type}")
    for statement in statements:
        db.execute(statement)


@migrations(name="m018_outcome_ranks")
def _m018_outcome_ranks(db: sqlite_utils.Database) -> None:
    # A group of one outcome (a report by outcome, or with an outcome filter) has its k-th cost read
    # in order from an index, as a kind's or a model's (unitcost.report.rollup_sql): each task and
    # model's row carries its task's winning outcome label, the per-model cost indexes carry it after
    # the cost, and the per-outcome cost indexes are made (unitcost.store.rollups).
    _add_model_column_then(db, "outcome_label", "TEXT", outcome_ranks_sql())


@migrations(name="m019_provider_parts")
def _m019_provider_parts(db: sqlite_utils.Database) -> None:
    # A report by provider counts from rollup_days' provider part and reads a provider's k-th (task,
    # provider) cost in order from an index, as by model (unitcost.report.rollup_sql): each task and
    # model's row of the (task, provider)'s first model carries the provider's cost in the task, and the
    # per-day rows get a provider part (unitcost.store.rollups); the values are made either way.
    _add_model_column_then(db, "provider_cost_pico", "INTEGER", provider_parts_sql())


@migrations(name="m020_task_attributes")
def _m020_task_attributes(db: sqlite_utils.Database) -> None:
    # Each task's merged attributes as report keys, with its cost, start and outcome beside, and their
    # counts and sums per name, value and day, kept by the rollup refresh (unitcost.store.attr_rollups): a
    # report by or filtered by a task attribute reads them instead of merging every run's attributes
    # (unitcost.report.attr_rollup_sql); made here for the tasks already stored.
    for statement in attribute_tables_sql("sqlite"):
        db.execute(statement)
    rebuild_attributes(db.conn.execute, "sqlite")


# Aggregates over `steps` rows: what tools cost, and what session blocks cost (a [[runtime]] charge,
# reported as runtime cost with the runs' own runtime_cost_pico, never as tool cost).
TOOL_COST_SQL = "SUM(CASE WHEN type = 'session' THEN 0 ELSE COALESCE(cost_pico, 0) END)"
SESSION_COST_SQL = "SUM(CASE WHEN type = 'session' THEN COALESCE(cost_pico, 0) ELSE 0 END)"


def dropped_spans(
    db: sqlite_utils.Database | sqlite3.Connection, since_ns: int | None = None, until_ns: int | None = None
) -> int:
    """How many spans were dropped (recorded in [since, until) when given) instead of stored: the rule
    of `unitcost.store.losses.dropped_spans`, for an SQLite store and the loss file beside it."""
    losses = None  # an in-memory store has no file, so no loss file beside it
    for _, name, file in db.execute("PRAGMA database_list").fetchall():
        if name == "main" and file:
            losses = loss_file_for(file)
    has_table = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dropped_spans'").fetchone()
    return count_dropped(db.execute, has_table is not None, losses, since_ns, until_ns)


def default_db_path() -> str | Path:
    """$UNITCOST_DB (a path, or a PostgreSQL URL kept as it is), else the per-user application
    directory (click's convention per platform)."""
    env = os.environ.get("UNITCOST_DB")
    if env:
        return env if is_url(env) else Path(env).expanduser()
    import click  # here: click is needed by the CLI only (start-up time of `configure()`)

    return Path(click.get_app_dir("unitcost")) / "unitcost.db"


UNITCOST_TABLES = {"runs", "calls", "steps", "outcomes"}


def _check_writable(path: Path) -> None:
    """Say now, not at the first export, that the store cannot be written: SQLite opens a file it may
    not write read-only without a word, and in WAL mode it creates ``<name>-wal`` and ``<name>-shm``
    beside the file."""
    directory = path.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(
            f"cannot write the store at {path}: its directory {directory} is read-only "
            f"(SQLite needs to create {path.name}-wal and {path.name}-shm there); pass another db="
        )
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"cannot write the store at {path}: the file is read-only; pass another db=")


def open_store(path: str | os.PathLike[str], *, create: bool = True) -> sqlite_utils.Database:
    """Open (and create or migrate) a store. Raises StoreError with a clear message when it can't."""
    return database(open_connection(path, create=create))


def database(conn: sqlite3.Connection) -> sqlite_utils.Database:
    """sqlite-utils' view of an open store's connection."""
    import sqlite_utils  # here: a report reads through the connection alone (start-up time of the CLI)

    # execute_plugins=False: sqlite-utils would otherwise scan every installed distribution's entry
    # points for its plugins (~0.1 s), and the store runs no plugin's code.
    return sqlite_utils.Database(conn, execute_plugins=False)


def unusable(path: object, exc: sqlite3.DatabaseError) -> StoreError:
    """The error for a store SQLite could not use: locked by another process past the busy timeout
    (worth trying again), or damaged or not SQLite at all. Either way nothing was changed."""
    if getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreError(
            f"{path} is locked by another process (waited {LOCK_WAIT_S:g} s for its migration, write or open "
            "transaction to end); unitcost has not changed it: try again"
        )
    return StoreError(f"{path} is not a usable unitcost store ({exc}); unitcost has not changed it")


def open_connection(path: str | os.PathLike[str], *, create: bool = True) -> sqlite3.Connection:
    """`open_store`'s connection: open, created or migrated. Raises StoreError when it can't."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise StoreError(f"no unitcost store at {path} (run an instrumented program first, or pass --db)")
        try:
            # Created readable by its owner only: the store says what the user's agents did.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot create the store at {path}: {exc.strerror or exc}") from exc
    elif not create and path.is_file() and path.stat().st_size == 0:
        # An empty file is not a store: a report must not turn it into one (reading writes nothing).
        raise StoreError(
            f"{path} is an empty file, not a unitcost store (run an instrumented program first, or pass --db)"
        )
    if create:
        _check_writable(path)
    conn = None
    try:
        # Room for the writer's statements of every batch size (unitcost.store.bulk) besides the rest.
        conn = sqlite3.connect(
            path, timeout=LOCK_WAIT_S, check_same_thread=False, isolation_level=None, cached_statements=512
        )
        conn.execute("PRAGMA recursive_triggers = on")  # as sqlite-utils sets it on every connection it wraps
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and not (tables & UNITCOST_TABLES) and MIGRATIONS_TABLE not in tables:
            conn.close()
            raise StoreError(f"{path} is an SQLite database but not a unitcost store; refusing to touch it")
        conn.execute(f"PRAGMA busy_timeout = {round(LOCK_WAIT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if not migrations.has_all(conn, tables) and migrations.pending(db := database(conn)):
            # Several processes may open a new store at once: BEGIN IMMEDIATE makes them take turns
            # (the busy timeout waits), and each re-checks what is pending once it holds the lock.
            conn.execute("BEGIN IMMEDIATE")
            try:
                migrations.apply(db)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        # A corrupt file or one that is not SQLite at all: reported, and left exactly as it is.
        raise unusable(path, exc) from exc
    return conn
