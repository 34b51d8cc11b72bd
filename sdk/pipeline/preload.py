"""What unitcost's background threads need, loaded on the thread that configures unitcost.

The store writer and the export processor run on threads of their own. An import made there is a
hazard to the host program: Python publishes a module in ``sys.modules`` before its body has run, and
openai 2.x looks ``httpx2`` up there at request time, so a writer importing genai-prices (which
imports httpx2) made the host's first calls fail with "partially initialized module 'httpx2'". And
under a caller that keeps the GIL busy, every file lookup of an import on the writer thread waits up
to the interpreter's switch interval, which kept the store empty for seconds.

So `load_for_writers` runs on the thread that calls `configure()` (or the first instrumented call
that configures unitcost by default), before any writer starts: it imports every module the writers
need, error and reconnect paths included, and loads genai-prices' price data. After it, nothing on a
writer thread imports a module (tests/guarantees/test_guarantees_imports.py checks it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..pricing.book import PriceBook

__all__ = ["WRITER_MODULES", "load_for_writers"]

# Modules a writer or the export processor may import at the moment it first needs them. The
# unitcost modules among them import the rest at module level.
WRITER_MODULES = (
    "genai_prices",
    "genai_prices.data_snapshot",
    "genai_prices.data",  # the price data itself: ~0.2 s, the bulk of the cost
    "sqlite_utils",
    "sqlite_utils.migrations",  # (unitcost.store.schema imports it when a store lacks a migration)
    "unitcost.store.bulk",
    "unitcost.store.run_totals",
    "unitcost.store.schema",
    "unitcost.store.backend",
    "unitcost.store.sqlite",
    "unitcost.store.connect",
    "unitcost.exporters.store",
    "unitcost.exporters.enrich",
    "unitcost.pricing.energy",  # and ecologits, when installed: loaded by PriceBook.load (EnergyBook.load)
)


def load_for_writers(prices: PriceBook) -> None:
    """Import what the writers need and load the price data, here, on the configuring thread."""
    for name in WRITER_MODULES:
        importlib.import_module(name)
    prices.load()
