"""unitcost's benchmarks: overhead, throughput, scale, memory and import time, each measured against a
baseline in the same run (see benchmarks/README.md). Run them all with ``benchmarks/run``."""
