"""Recording, on the caller's thread: tasks, steps and tools, the current task, outcomes, the LLM-call
lifecycle and stream watching, raw responses, `instrument()`, `record_usage()` and budgets.

What runs here runs inside the user's program, between its own lines: it opens and ends spans and
never touches a database (the store writer does, on its own thread).
"""
