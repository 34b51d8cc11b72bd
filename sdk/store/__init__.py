"""The database: schema and migrations, bulk writes, the per-run totals, prune, doctor, outcome import,
and other instrumentations' spans read in unitcost's words.

Runs on the store writer's thread (`unitcost.exporters.store`) and in the CLI; never on the caller's
thread. Everything outside reaches the database through the store seam: `backend.StoreBackend`,
opened by `connect.open_backend(db)` (SQLite: `sqlite.py`).
"""
