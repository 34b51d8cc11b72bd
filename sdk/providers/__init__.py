"""Thin adapters from each provider SDK's objects onto unitcost's LLM call lifecycle."""
