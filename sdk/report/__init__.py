"""Read-only reports over the store: the report engines (SQL and Python), compare and what-if, checks,
runs and their details (`unitcost show`), the HTML page and its charts.

Runs in the CLI and behind `unitcost.query`; it only reads the database.
"""
