"""`configure()` and the wiring behind it: the TracerProvider, unitcost's span processors and exporters,
signal handling and the exit summary.

`configure()` runs on the caller's thread; the span processors' ``on_end`` runs on whichever thread
ends a span, and hands spans to the exporters' own threads (see `unitcost.exporters`).
"""
