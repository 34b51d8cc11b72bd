"""`configure()`, `flush()` and `shutdown()`: the settings in force and the pipeline they built.

The OpenTelemetry SDK, the store and the price data are imported only when a pipeline is built, so
`import unitcost` stays light (see `unitcost.pipeline.wiring` for how spans reach the store).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import ConfigurationError, StoreError, internal_error, logger
from ..common.forks import after_fork_in_child
from ..record.open_streams import end_open_streams
from . import summary as _summary
from .settings import Settings

if TYPE_CHECKING:
    from .wiring import Pipeline

__all__ = ["configure", "flush", "pipeline", "shutdown"]


_lock = threading.RLock()


def _new_lock_after_fork() -> None:
    # A child of fork gets this lock as it was: possibly held by a thread the child does not have.
    global _lock
    _lock = threading.RLock()


after_fork_in_child(_new_lock_after_fork)
_pipeline: Pipeline | None = None
_failed: str | None = None  # why the last configure() raised, until one succeeds
_atexit_registered = False


def configure(
    service_name: str | None = None,
    *,
    db: str | os.PathLike[str] | None = None,
    store: bool = True,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    otlp_headers: Mapping[str, str] | None = None,
    otlp_timeout: float | None = None,
    exporters: Sequence[Any] = (),
    metrics: bool | Sequence[Any] | None = None,
    price_file: str | os.PathLike[str] | None = None,
    openai_include_usage: bool = True,
    capture_content: bool | None = None,
    redact: Callable[[str], str] | None = None,
    flush_on_signals: bool = False,
    user_attribute: str | None = None,
    energy: bool | None = None,
    store_writer: str | None = None,
) -> None:
    """Set where unitcost sends what it records. The one unitcost call that raises on bad input.

    Args:
        service_name: names this program in the store and in exported traces.
        db: the store's path; default ``$UNITCOST_DB``, else the per-user store:
            ``~/.config/unitcost/unitcost.db`` on Linux, ``~/Library/Application Support/unitcost/unitcost.db``
            on macOS, ``%APPDATA%\\unitcost\\unitcost.db`` on Windows (docs/store.md).
        store: ``False`` to record nothing locally (for example, OTLP export only).
        otlp_endpoint: also export traces over OTLP to this base URL (``http://host:4318``, or
            ``http://host:4317`` over gRPC), with each LLM call's cost and each task's totals. Without
            it, ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is honoured when unitcost
            owns the TracerProvider; an application that set its own exports by itself.
        otlp_protocol: ``"http/protobuf"`` or ``"grpc"``; default ``OTEL_EXPORTER_OTLP_PROTOCOL``,
            else http/protobuf.
        otlp_headers: headers for every OTLP request (``{"authorization": "Bearer ..."}``); default
            ``OTEL_EXPORTER_OTLP_HEADERS``.
        otlp_timeout: seconds per OTLP request; default ``OTEL_EXPORTER_OTLP_TIMEOUT``, else 10.
        exporters: more OpenTelemetry ``SpanExporter`` objects to send spans to, with the same costs
            and totals (``unitcost.exporters.JsonlSpanExporter``, ``ConsoleSpanExporter``, yours).
        metrics: the GenAI client metrics and unitcost's cost and task counters. ``None`` (default):
            exported over OTLP whenever traces are (``OTEL_METRICS_EXPORTER=none`` turns them off);
            ``True``: over OTLP; ``False``: off; or a list of OpenTelemetry ``MetricReader`` objects.
        price_file: a price-override TOML file; default ``$UNITCOST_PRICES``, else ``./unitcost.toml``.
        openai_include_usage: ask OpenAI streams for their usage chunk when the caller did not set
            ``stream_options`` (the extra chunk is hidden from the caller).
        capture_content: record prompt and completion text (on spans and in the store). Off by
            default; ``None`` follows ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.
        redact: with content capture, called with each piece of text before it is recorded; returns
            the text to keep. If it raises, that call's content is left out.
        flush_on_signals: flush before SIGTERM / SIGHUP end the program (unitcost installs no signal
            handler otherwise). Only from the main thread.
        user_attribute: the task attribute that names the user or customer (``"customer"``), kept in
            the store for ``unitcost report --users`` and ``unitcost whatif --cap-per-user``.
        energy: estimate each call's energy and emissions on the store writer. ``None`` (default):
            ``$UNITCOST_ENERGY`` (``0`` turns it off), else on whenever the ``energy`` extra
            (ecologits) is installed. An estimate costs the writer about a millisecond of Python
            per distinct call, off the caller's thread; ``False`` saves it, and every call is
            then counted as unestimated.

    Example::

        import unitcost
        unitcost.configure(service_name="support-bot")
    """
    global _failed
    with _lock:
        try:
            _configure(
                service_name, db, store, otlp_endpoint, otlp_protocol, otlp_headers, otlp_timeout, exporters,
                metrics, price_file, openai_include_usage, capture_content, redact, flush_on_signals,
                user_attribute, energy, store_writer,
            )
        except ConfigurationError as exc:
            # Remembered: the automatic configuration on first use must not then quietly pick the
            # default store, somewhere the user did not ask for (see `pipeline`).
            _failed = str(exc)
            raise
        _failed = None


def _configure(
    service_name: str | None, db: Any, store: bool, otlp_endpoint: str | None, otlp_protocol: str | None,
    otlp_headers: Mapping[str, str] | None, otlp_timeout: float | None, exporters: Sequence[Any],
    metrics: bool | Sequence[Any] | None, price_file: Any, openai_include_usage: bool,
    capture_content: bool | None, redact: Callable[[str], str] | None, flush_on_signals: bool,
    user_attribute: str | None, energy: bool | None, store_writer: str | None,
) -> None:
    global _pipeline, _atexit_registered
    # Here, not at the top: the price book (pydantic), the store (sqlite-utils) and the wiring
    # (OpenTelemetry's SDK) are too slow for `import unitcost` (start-up time).
    from ..pricing.book import PriceBook, find_price_file
    from ..store.backend import is_url
    from ..store.connect import open_backend
    from ..store.schema import default_db_path
    from ..store.settings import remember
    from .wiring import build_pipeline

    if redact is not None and not callable(redact):
        raise ConfigurationError("redact must be a function that takes a text and returns the text to keep")
    prices = PriceBook.from_price_file(price_file)
    if energy is None:
        energy = os.environ.get("UNITCOST_ENERGY", "1").strip().lower() not in ("0", "false", "no", "off")
    if energy:
        prices.energy.turn_on()  # loaded with the price data, before any writer starts
    writer = (store_writer or os.environ.get("UNITCOST_STORE_WRITER") or "thread").strip().lower()
    if writer not in ("thread", "process"):
        raise ConfigurationError(f"store_writer must be 'thread' or 'process', not {writer!r}")
    if user_attribute is not None and (not isinstance(user_attribute, str) or not user_attribute.strip()):
        raise ConfigurationError("user_attribute must be a task attribute's name, such as 'customer'")
    # A PostgreSQL URL is kept as it is (unitcost.store.backend.open_backend).
    db_path: Any = db if is_url(db) else Path(db).expanduser() if db is not None else default_db_path()
    if store:
        try:
            opened = open_backend(db_path)
            try:
                if user_attribute is not None:
                    remember(opened, "user_attribute", user_attribute.strip())
            finally:
                opened.close()
        except StoreError as exc:
            raise ConfigurationError(str(exc)) from exc
    if otlp_protocol or otlp_endpoint or metrics or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        from ..exporters.otlp import resolve_protocol  # start-up time, as above

        # Before the pipeline in force is shut down: a protocol that cannot be used leaves it running.
        resolve_protocol(otlp_protocol)
    settings = Settings(
        service_name=service_name or os.environ.get("OTEL_SERVICE_NAME") or "unknown_service",
        db_path=db_path if store else None,
        otlp_endpoint=otlp_endpoint,
        openai_include_usage=openai_include_usage,
        otlp_protocol=otlp_protocol,
        otlp_headers=tuple((otlp_headers or {}).items()),
        otlp_timeout=otlp_timeout,
        exporters=tuple(exporters),
        metrics=metrics if metrics is None or isinstance(metrics, bool) else tuple(metrics),
        store_writer=writer,
        price_file=None if (found := find_price_file(price_file)) is None else found.resolve(),
        energy=bool(energy),
    )
    # start-up time: `import unitcost` needs neither until configure()
    from ..record import content as _content
    from . import signals as _signals

    if flush_on_signals:
        _signals.install(flush)  # raises ConfigurationError off the main thread
    else:
        _signals.uninstall()
    _content.set_capture(capture_content, redact)
    if _pipeline is not None:
        _pipeline.shutdown()
    _pipeline = build_pipeline(settings, prices)
    if not _atexit_registered:
        atexit.register(_at_exit)
        _atexit_registered = True


def pipeline() -> Pipeline:
    """The pipeline in force, configuring one with the defaults on first use (none after a failed
    configure(): see `_off_pipeline`)."""
    global _pipeline
    current = _pipeline
    if current is not None:
        return current
    with _lock:
        if _pipeline is None and _failed is not None:
            _pipeline = _off_pipeline(_failed)
        if _pipeline is None:
            configure()
        assert _pipeline is not None
        return _pipeline


def _off_pipeline(reason: str) -> Pipeline:
    """After a failed configure(): spans go nowhere (no store, no exporter), with one warning."""
    from ..pricing.book import PriceBook  # start-up time, as in configure()
    from .wiring import build_pipeline

    logger.warning(
        "unitcost: configure() failed (%s); unitcost records nothing until configure() succeeds", reason
    )
    settings = Settings(service_name="unknown_service", db_path=None, otlp_endpoint=None,
                        openai_include_usage=True, metrics=False)
    return build_pipeline(settings, PriceBook(), export=False)


def flush(timeout_seconds: float = 30.0) -> bool:
    """Write everything recorded so far to the store and exporters. True when all of it went."""
    current = _pipeline
    if current is None:
        return True
    try:
        return current.flush(int(timeout_seconds * 1000))
    except Exception as exc:  # noqa: BLE001 - telemetry must not break the caller
        internal_error("flush", exc)
        return False


_configured_ns = time.time_ns()


def _at_exit() -> None:
    settings = _pipeline.settings if _pipeline is not None else None
    shutdown()
    if settings is not None:
        try:
            from .forgotten import forgotten_instrument_warning  # loaded with the pipeline: no import cost here

            warning = forgotten_instrument_warning()
            if warning:
                logger.warning(warning)
        except Exception as exc:  # noqa: BLE001
            internal_error("exit warning", exc)
    if settings is not None and settings.db_path is not None and _summary.wanted():
        try:
            _summary.print_summary(settings.db_path, _configured_ns)
        except Exception as exc:  # noqa: BLE001
            internal_error("exit summary", exc)


def shutdown() -> None:
    """Flush and stop unitcost's exporters. Called at interpreter exit too.

    A stream the program still holds open is recorded first (as incomplete, its missing tokens
    estimated: `unitcost.record.open_streams`), while the pipeline it reports to is still in force.
    """
    global _pipeline
    current = _pipeline
    if current is not None:
        try:
            current.take_ended(end_open_streams())
        except Exception as exc:  # noqa: BLE001
            internal_error("ending open streams", exc)
    with _lock:
        current, _pipeline = _pipeline, None
    if current is not None:
        try:
            current.shutdown()
        except Exception as exc:  # noqa: BLE001
            internal_error("shutdown", exc)
