"""unitcost's benchmarks: overhead, throughput, scale, memory and import time, each measured against a
baseline in the same run (see benchmarks/README.md). Run them all with ``benchmarks/run``."""

import os as _os

# Every process a benchmark starts measures unitcost as `pip install unitcost` gives it: without the
# energy extra (see _common.ENERGY; UNITCOST_BENCH_ENERGY=1 measures with it).
_os.environ["UNITCOST_ENERGY"] = _os.environ.get("UNITCOST_BENCH_ENERGY", "0")
