"""Prices: the token buckets of one call's usage and the price book (genai-prices, plus the user's
price file) that turns them into dollars.

Pure computation, run by whoever prices a call: the store writer's thread, budgets on the caller's
thread, `unitcost whatif`.
"""
