"""A PostgreSQL store's connection, schema and named migrations (the backend is `unitcost.store.postgres`).

``UNITCOST_DB=postgresql://user@host:5432/db`` (or ``configure(db=...)``, or any command's ``--db``)
selects it; anything else is an SQLite path. The tables and columns are the SQLite store's
(`unitcost.store.schema`), with the same migration names, so both are read by the same report
rules. Integers are BIGINT (Unix ns and pico-dollars need 64 bits); JSON stays TEXT so that it reads
back byte for byte as it was written.

Connection: psycopg 3 (the ``unitcost[postgres]`` extra) with libpq's own rules, so the URL's parts
win over the usual environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
PGSSLMODE, PGPASSFILE, ...), and ``?sslmode=verify-full`` and friends work. The password never
leaves this module: `redact_url` is what logs, errors and `unitcost doctor` show.

Many processes may open a new store at once: migrations run in one transaction that first takes a
transaction-level advisory lock (`pg_advisory_xact_lock`, released at commit, safe behind
pgbouncer's transaction pooling), and each re-reads what is applied once it holds the lock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..common.errors import ConfigurationError, StoreError
from .attr_rollups import create_tables_sql as attribute_tables_sql
from .attr_rollups import rebuild as rebuild_attributes
from .rollups import (
    create_tables_sql,
    ended_and_buckets_sql,
    mark_all_sql,
    outcome_ranks_sql,
    postgres_triggers,
    provider_parts_sql,
    refresh_statements,
)
from .stale_runs import marks_sql, rollup_statement_triggers
from .stale_runs import postgres_triggers as sums_triggers

__all__ = [
    "KEEPALIVE_COUNT", "KEEPALIVE_IDLE_S", "KEEPALIVE_INTERVAL_S", "MIGRATIONS", "MIGRATION_LOCK", "MIGRATION_WAIT_S",
    "STORE_TABLES", "UNACKED_SEND_S", "MigrationBusy", "applied_migrations", "connect", "is_postgres_url", "migrate",
    "open_connection", "pending_migrations", "redact_url", "retry_after", "server_gone", "without_password",
]

_SCHEMES = ("postgresql://", "postgres://")
# pg_advisory_xact_lock's key for migrations: "unitcost" as a 64-bit integer.
MIGRATION_LOCK = 0x756E6974636F7374
# How long a process waits for a lock its migration needs: the migration lock while another process
# migrates, or a table a migration alters while a long report reads it. Past it the process gives up
# for now (`MigrationBusy`): the SDK's writer keeps its batches and tries again with backoff, a command
# says so. A migration of a store of a million calls takes tens of seconds (benchmarks/RESULTS.md).
MIGRATION_WAIT_S = 120.0
# How soon a connection notices that its network path died without a word (a partition, a host that
# vanished: no RST) instead of waiting in recv/send until the kernel gives up (retransmissions for
# ~15 min, keepalives after 2 h idle). libpq's options, for TCP only (a Unix socket ignores them); the
# URL's own (``?keepalives_idle=...``, ``?tcp_user_timeout=0`` for the system's) or a PGSERVICE
# service file's win (`_connect_options`). The server's kernel answers probes and acknowledges data
# whatever the server is doing, so a live server is never cut off, however long its statement runs.
# An idle connection is probed after 30 s of silence: a probe is one small packet, cheap at any rate.
KEEPALIVE_IDLE_S = 30
# then every 5 s: longer than any round trip of a working link, so a slow path is not taken for a dead one.
KEEPALIVE_INTERVAL_S = 5
# 3 probes unanswered (one lost packet is not a death): dead after 30 + 3 x 5 = 45 s of silence.
KEEPALIVE_COUNT = 3
# Data sent and unacknowledged this long ends the connection (TCP_USER_TIMEOUT: Linux, libpq >= 12): the
# keepalives' 45 s, since on Linux it also decides when unanswered probes do. A live server's kernel
# acknowledges what arrives whatever the server is doing; only one that stopped reading that long with
# its receive buffer full would be cut (a batch's lock waits stop at LOCK_WAIT_S, 10 s).
UNACKED_SEND_S = 45
# libpq's name and value for each; `connect` passes those the user did not set.
_DEAD_PEER = (
    ("keepalives", 1), ("keepalives_idle", KEEPALIVE_IDLE_S), ("keepalives_interval", KEEPALIVE_INTERVAL_S),
    ("keepalives_count", KEEPALIVE_COUNT), ("tcp_user_timeout", UNACKED_SEND_S * 1000),
)
_TCP_USER_TIMEOUT_LIBPQ = 120000  # (libpq 12: the first to know tcp_user_timeout; an older one refuses it)
_MIGRATIONS_TABLE = "_unitcost_migrations"
STORE_TABLES = ("runs", "calls", "steps", "outcomes", "call_content")


def is_postgres_url(value: object) -> bool:
    """True for ``postgresql://...`` and ``postgres://...`` (what selects this backend)."""
    return isinstance(value, str) and value.lower().startswith(_SCHEMES)


def redact_url(url: str) -> str:
    """The URL as logs, errors and `doctor` may show it: a password (in the userinfo or as
    ``?password=``) becomes ``***``.

    >>> redact_url("postgresql://app:s3cret@db.internal:5432/costs?sslmode=require&password=x")
    'postgresql://app:***@db.internal:5432/costs?sslmode=require&password=***'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if colon else f"{user}@{hosts}"
    query = urlencode(
        [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*:/",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def without_password(text: str, url: str) -> str:
    """``text`` (an error message) with the URL's password taken out, wherever it appears."""
    secrets = [url]
    try:
        parts = urlsplit(url)
        if parts.password:
            secrets.append(parts.password)
        secrets += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    except ValueError:
        pass
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, redact_url(url) if secret == url else "***")
    return re.sub(r"(?i)(password\s*=\s*)\S+", r"\1***", text)


def _driver() -> Any:
    try:
        # Here: psycopg is an optional extra, needed only when the store is on PostgreSQL.
        import psycopg
    except ImportError as exc:
        raise ConfigurationError(
            "the store is a postgresql:// URL but psycopg is not installed: pip install 'unitcost[postgres]'"
        ) from exc
    return psycopg


def _whole_numbers(psycopg: Any) -> type:
    """A loader for `numeric` that gives an int when the value is whole: PostgreSQL's SUM of BIGINT
    is numeric, and reports must get the same Python ints from both backends (a Decimal prints
    differently in JSON), without a CAST that would overflow past 2**63 pico-dollars."""
    from psycopg.types.numeric import NumericLoader

    class WholeNumericLoader(NumericLoader):
        def load(self, data: Any) -> Any:
            value = super().load(data)
            if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
                return int(value)
            return value

    return WholeNumericLoader


def _connect_options(psycopg: Any, url: str, connect_timeout: int) -> dict[str, Any]:
    """unitcost's libpq options less those the user set: in the URL, in the environment (``PGAPPNAME``,
    ``PGCONNECT_TIMEOUT``, ...) or in the service file ``PGSERVICE`` names (`PQconndefaults` reads both).
    That is the name the server shows (`application_name`), the bound on a dead network path
    (`KEEPALIVE_IDLE_S` and the rest) and on the connect itself, which stays ``connect_timeout`` when
    the user's is 0 (wait for ever). A URL that names a service (``?service=``, ``?servicefile=``)
    gets only the connect bound: what that file sets cannot be read without connecting, and it must win."""
    given = psycopg.conninfo.conninfo_to_dict(url)
    if "service" in given or "servicefile" in given:
        return {"connect_timeout": connect_timeout}
    # (attribute lookups, no import: this runs on the store writer's thread when it reconnects)
    user = {option.keyword.decode(): option.val.decode() for option in psycopg.pq.Conninfo.get_defaults()
            if option.val is not None} | {name: str(value) for name, value in given.items()}
    options: dict[str, Any] = {
        name: value for name, value in (("application_name", "unitcost"), *_DEAD_PEER) if name not in user
    }
    if psycopg.pq.version() < _TCP_USER_TIMEOUT_LIBPQ:
        options.pop("tcp_user_timeout", None)
    if not _positive_int(user.get("connect_timeout")):
        options["connect_timeout"] = connect_timeout
    return options


def _positive_int(value: str | None) -> bool:
    try:
        return value is not None and int(value) > 0
    except ValueError:
        return False


def connect(url: str, *, connect_timeout: int = 10, autocommit: bool = False) -> Any:
    """A psycopg connection to ``url`` in UTC, its numeric sums read as ints, that notices a dead network
    path within `UNACKED_SEND_S` (TCP keepalives and a user timeout) and waits at most ``connect_timeout``
    seconds to connect, unless the user set their own (`_connect_options`).
    StoreError, without the password, when the server cannot be reached or refuses."""
    psycopg = _driver()
    try:
        conn = psycopg.connect(url, autocommit=True, **_connect_options(psycopg, url, connect_timeout))
        # (set here, not as libpq `options`, which would replace the URL's or PGOPTIONS' own; one round trip)
        # UTC for time buckets. A batch the server acknowledged is on disk, whatever the server's default:
        # with synchronous_commit off, a crash loses the last commits silently, and nothing would count
        # them. No JIT: unitcost's statements read an index or a few thousand rows each, and the planner's
        # estimate of a LIMIT ... OFFSET or of a batch's upsert passes jit_above_cost, so each would spend
        # 0.2-2 s compiling code that runs for milliseconds (measured: benchmarks/RESULTS.md, PostgreSQL).
        conn.execute(
            "SELECT set_config('TimeZone', 'UTC', false), set_config('synchronous_commit', 'on', false), "
            "set_config('jit', 'off', false)"
        )
        conn.autocommit = autocommit
    except psycopg.Error as exc:
        raise StoreError(f"cannot reach the store at {redact_url(url)}: {without_password(str(exc), url)}") from exc
    conn.adapters.register_loader("numeric", _whole_numbers(psycopg))
    return conn


# --- schema: the SQLite store's migrations, by the same names ------------------------------------

# The sums of run_totals and run_sums as migrations m007 and m010 made them (a shipped migration is
# never edited: a new sum is a new migration, as for SQLite).
_M007_SUMS = (
    "calls", "input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
    "reasoning_tokens", "cost_pico", "reasoning_cost_pico", "unpriced_calls", "estimated_calls", "resent_tokens",
    "resent_uncached_tokens", "retries", "resend_cost_pico", "resend_savings_pico",
)


_M014_SUMS = ("energy_uwh_min", "energy_uwh_max", "gwp_ug_min", "gwp_ug_max", "unestimated_energy_calls")


def _sums(columns: Sequence[str]) -> str:
    return ", ".join(f"{c} BIGINT NOT NULL DEFAULT 0" for c in columns)


_M001 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, parent_span_id TEXT, parent_run_id TEXT,
    kind TEXT NOT NULL, key TEXT, service TEXT, started_ns BIGINT NOT NULL, ended_ns BIGINT NOT NULL,
    error_type TEXT, attributes TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_started ON runs(started_ns);
CREATE INDEX runs_kind_key ON runs(kind, key);
CREATE TABLE calls (
    span_id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, parent_span_id TEXT, run_id TEXT,
    started_ns BIGINT NOT NULL, ended_ns BIGINT NOT NULL, provider TEXT NOT NULL, operation TEXT NOT NULL,
    model TEXT NOT NULL, response_model TEXT,
    input_tokens BIGINT NOT NULL DEFAULT 0, cache_read_tokens BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0, cache_write_1h_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0, reasoning_tokens BIGINT NOT NULL DEFAULT 0,
    cost_pico BIGINT, reasoning_cost_pico BIGINT, price_source TEXT,
    estimated BIGINT NOT NULL DEFAULT 0, streamed BIGINT NOT NULL DEFAULT 0, incomplete BIGINT NOT NULL DEFAULT 0,
    error_type TEXT, service_tier TEXT
);
CREATE INDEX calls_run ON calls(run_id);
CREATE INDEX calls_started ON calls(started_ns);
CREATE TABLE steps (
    span_id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, parent_span_id TEXT, run_id TEXT, type TEXT NOT NULL,
    name TEXT NOT NULL, started_ns BIGINT NOT NULL, ended_ns BIGINT NOT NULL, cost_pico BIGINT, error_type TEXT
);
CREATE INDEX steps_run ON steps(run_id);
CREATE TABLE outcomes (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, recorded_ns BIGINT NOT NULL, run_id TEXT,
    kind TEXT, key TEXT, label TEXT NOT NULL, success BIGINT NOT NULL, value_pico BIGINT,
    source TEXT NOT NULL, origin TEXT UNIQUE
);
CREATE INDEX outcomes_run ON outcomes(run_id);
CREATE INDEX outcomes_key ON outcomes(key);
"""

def _m020_task_attributes(conn: Any) -> None:
    for statement in attribute_tables_sql("postgresql"):
        conn.execute(statement)
    rebuild_attributes(conn.execute, "postgresql")


MIGRATIONS: tuple[tuple[str, str | tuple[str, ...] | Callable[[Any], None]], ...] = (
    ("m001_initial", _M001),
    ("m002_calls_retries", "ALTER TABLE calls ADD COLUMN retries BIGINT NOT NULL DEFAULT 0"),
    (
        "m003_calls_cache_write_retention",
        "ALTER TABLE calls ADD COLUMN cache_write_30m_tokens BIGINT NOT NULL DEFAULT 0, "
        "ADD COLUMN cache_write_12h_tokens BIGINT NOT NULL DEFAULT 0",
    ),
    (
        "m004_calls_server_tool_requests",
        "ALTER TABLE calls ADD COLUMN web_search_requests BIGINT NOT NULL DEFAULT 0, "
        "ADD COLUMN web_fetch_requests BIGINT NOT NULL DEFAULT 0, ADD COLUMN price_modifiers TEXT",
    ),
    (
        "m007_run_totals",
        "CREATE TABLE run_totals (run_id TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL, "
        f"{_sums(_M007_SUMS)}, PRIMARY KEY (run_id, provider, model))",
    ),
    (
        "m008_dropped_spans",
        "CREATE TABLE dropped_spans (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "recorded_ns BIGINT NOT NULL, reason TEXT NOT NULL, count BIGINT NOT NULL, service TEXT); "
        "CREATE INDEX dropped_spans_recorded ON dropped_spans(recorded_ns)",
    ),
    (
        "m009_call_content",
        "CREATE TABLE call_content (span_id TEXT PRIMARY KEY, input_messages TEXT, output_messages TEXT)",
    ),
    (
        "m010_run_sums",
        # (a store migrated here has no calls yet that the writer has not summed: the writer keeps
        # both tables from the first call on)
        f"CREATE TABLE run_sums (run_id TEXT NOT NULL PRIMARY KEY, {_sums(_M007_SUMS)})",
    ),
    # The parts of an Anthropic call's usage (usage.iterations), as JSON text (see unitcost.store.schema).
    ("m011_calls_usage_parts", "ALTER TABLE calls ADD COLUMN usage_parts TEXT"),
    # A [[runtime]] charge for the run's wall time, NULL when no entry prices it (see unitcost.store.schema).
    ("m012_runtime_cost", "ALTER TABLE runs ADD COLUMN runtime_cost_pico BIGINT"),
    # What `configure()` asked that the CLI needs later (unitcost.store.settings): name -> value.
    ("m013_settings", "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)"),
    (
        "m014_call_energy",
        # Each call's energy (µWh) and emissions (µg CO2eq) range, NULL when unestimated, and how it
        # was made; the per-run sums get the same columns plus unestimated_energy_calls. Every call
        # stored before this migration has no estimate, so each run's calls are all unestimated.
        "ALTER TABLE calls ADD COLUMN energy_uwh_min BIGINT, ADD COLUMN energy_uwh_max BIGINT, "
        "ADD COLUMN gwp_ug_min BIGINT, ADD COLUMN gwp_ug_max BIGINT, ADD COLUMN energy_source TEXT; "
        + "; ".join(
            f"ALTER TABLE {table} {', '.join(f'ADD COLUMN {c} BIGINT NOT NULL DEFAULT 0' for c in _M014_SUMS)}; "
            f"UPDATE {table} SET unestimated_energy_calls = calls"
            for table in ("run_totals", "run_sums")
        ),
    ),
    # Per-task rollups kept current by triggers and the writer (unitcost.store.rollups), made for the
    # tasks already stored. (A tuple of statements: the trigger functions' bodies hold semicolons.)
    (
        "m015_task_rollups",
        (*create_tables_sql("postgresql"), *postgres_triggers(), mark_all_sql(), *refresh_statements("postgresql")),
    ),
    # The runs whose per-run sums are stale, marked by a trigger on calls (unitcost.store.stale_runs);
    # the rollups' marks of runs, steps and run_sums made once a statement, not once a row (the same marks);
    # and the rollups vacuumed sooner than PostgreSQL's default (a fifth of a table changed): a report
    # reads their costs at a rank by an index-only scan, which reads the table too wherever a page is not
    # marked all-visible (2-20x slower, measured on 100,000 tasks), and every batch rewrites some rows.
    (
        "m016_stale_run_marks",
        (*marks_sql("postgresql"), *sums_triggers(), *rollup_statement_triggers(), *(
            f"ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0.02, "
            "autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05)"
            for table in ("task_rollup", "task_model_rollup", "rollup_days"))),
    ),
    # Each task's runs' last end, and each task's (and task and model's) start week and month, with
    # their indexes, and the runs nested in a run by index (see unitcost.store.schema's m017); a store
    # made since m015 has the columns.
    (
        "m017_task_rollup_ended",
        ("ALTER TABLE task_rollup ADD COLUMN IF NOT EXISTS ended_ns BIGINT NOT NULL DEFAULT 0, "
         "ADD COLUMN IF NOT EXISTS start_week BIGINT NOT NULL DEFAULT 0, "
         "ADD COLUMN IF NOT EXISTS start_month BIGINT NOT NULL DEFAULT 0",
         "ALTER TABLE task_model_rollup ADD COLUMN IF NOT EXISTS start_week BIGINT NOT NULL DEFAULT 0, "
         "ADD COLUMN IF NOT EXISTS start_month BIGINT NOT NULL DEFAULT 0",
         *ended_and_buckets_sql("postgresql"),
         "CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_run_id) WHERE parent_run_id IS NOT NULL"),
    ),
    # Each task and model's winning outcome label, the per-model cost indexes carrying it, and the
    # per-outcome cost indexes (see unitcost.store.schema's m018); a store made since m015 has the column.
    (
        "m018_outcome_ranks",
        ("ALTER TABLE task_model_rollup ADD COLUMN IF NOT EXISTS outcome_label TEXT", *outcome_ranks_sql()),
    ),
    # Each (task, provider)'s cost on its first model's row, its index, and rollup_days' provider part
    # (see unitcost.store.schema's m019); a store made since m015 has the column.
    (
        "m019_provider_parts",
        ("ALTER TABLE task_model_rollup ADD COLUMN IF NOT EXISTS provider_cost_pico BIGINT", *provider_parts_sql()),
    ),
    # Each task's merged attributes as report keys and their per-day counts (see unitcost.store.schema's
    # m020): a function of the connection, as the keys are made in Python (unitcost.store.attr_rollups).
    ("m020_task_attributes", _m020_task_attributes),
)


def applied_migrations(conn: Any) -> list[str]:
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_MIGRATIONS_TABLE,)).fetchone()[0]
    if not exists:
        return []
    return [r[0] for r in conn.execute(f"SELECT name FROM {_MIGRATIONS_TABLE} ORDER BY applied_order")]


def pending_migrations(conn: Any) -> list[str]:
    applied = set(applied_migrations(conn))
    return [name for name, _ in MIGRATIONS if name not in applied]


class MigrationBusy(StoreError):
    """A lock the migration needs was held past `MIGRATION_WAIT_S` (another process migrating, or a
    long transaction on a table it alters)."""


class _StaleCatalog(Exception):
    """This session's catalog cache predates another session's migration (see `migrate`)."""


def migrate(conn: Any, *, wait: float | None = None) -> list[str]:
    """Create or migrate the store in the connection's schema, once however many processes try at
    the same moment; returns the names applied by this call. A foreign database is refused; a lock
    held by another process past ``wait`` seconds (default `MIGRATION_WAIT_S`) raises MigrationBusy."""
    wait = MIGRATION_WAIT_S if wait is None else wait
    for _ in range(5):
        try:
            return _migrate_once(conn, wait)
        except _StaleCatalog:
            continue  # a new transaction reads the catalog afresh
        except _driver().errors.LockNotAvailable as exc:
            raise MigrationBusy(
                f"waited {wait:g} s for another process's migration of the store (or a long transaction on a "
                "table the migration alters) to end; nothing was changed, and it is tried again later"
            ) from exc
    raise StoreError("the store's schema kept changing while unitcost migrated it; try again")


def _migrate_once(conn: Any, wait: float) -> list[str]:
    with conn.transaction():
        # (lock_timeout bounds each lock wait of this transaction: the advisory lock and every ALTER's)
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{max(1, round(wait * 1000))}ms",))
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        # A session that waited on the lock while another one migrated still has the catalog cache of
        # before (an advisory lock does not refresh it, a new transaction does): compare it with what
        # a fresh snapshot of pg_class says, and start over when they differ.
        fresh = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() "
            "AND tablename = %s)", (_MIGRATIONS_TABLE,),
        ).fetchone()[0]
        if fresh != conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_MIGRATIONS_TABLE,)).fetchone()[0]:
            raise _StaleCatalog()
        applied = applied_migrations(conn)
        if not applied:
            found = {r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )}
            if found & set(STORE_TABLES):
                raise StoreError("this PostgreSQL schema has tables named like unitcost's but is not a unitcost "
                                 "store; refusing to touch it (use another database or schema)")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_MIGRATIONS_TABLE} (migration_set TEXT NOT NULL, name TEXT NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
                "applied_order BIGINT GENERATED ALWAYS AS IDENTITY, PRIMARY KEY (migration_set, name))"
            )
        done = []
        for name, ddl in MIGRATIONS:
            if name in applied:
                continue
            if callable(ddl):
                ddl(conn)
            else:
                statements = ddl if isinstance(ddl, tuple) else [s for s in ddl.split(";") if s.strip()]
                for statement in statements:
                    conn.execute(statement)
            conn.execute(f"INSERT INTO {_MIGRATIONS_TABLE} (migration_set, name) VALUES ('unitcost', %s)", (name,))
            done.append(name)
    return done


def open_connection(url: str, *, create: bool = True, connect_timeout: int = 10) -> Any:
    """A connection to a migrated store (migrating it when ``create``; else StoreError when it has
    no unitcost tables yet)."""
    conn = connect(url, connect_timeout=connect_timeout)
    try:
        if create:
            migrate(conn)
        else:
            applied = applied_migrations(conn)
            conn.rollback()
            if not applied:
                raise StoreError(
                    f"no unitcost store at {redact_url(url)} (run an instrumented program with this db first)"
                )
            if pending_migrations(conn):
                migrate(conn)
            conn.rollback()
    except BaseException:
        conn.close()
        raise
    return conn


def retry_after(attempt: int, *, first: float = 0.1, cap: float = 5.0) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): doubling from ``first`` to ``cap``."""
    return min(cap, first * (2 ** min(attempt, 16)))


def server_gone(exc: BaseException) -> bool:
    """True when ``exc`` says the server went away or is not there yet (worth retrying the same batch on a
    new connection), False when the batch itself is at fault or a query was cancelled."""
    psycopg = _driver()
    errors = psycopg.errors
    if isinstance(exc, errors.AdminShutdown | errors.CrashShutdown | errors.CannotConnectNow
                  | errors.IdleInTransactionSessionTimeout):  # (the server ended a stalled batch's session)
        return True
    if isinstance(exc, errors.QueryCanceled):
        return False
    if isinstance(exc, StoreError) and isinstance(exc.__cause__, psycopg.OperationalError):
        return True  # a connect that failed (refused, starting up, timed out)
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and getattr(exc, "sqlstate", None) is None
