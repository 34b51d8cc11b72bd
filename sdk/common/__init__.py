"""The vocabulary every part of unitcost shares: errors, span attribute names, money, secrets, time windows.

Runs wherever it is imported (the caller's thread, the store writer, the CLI). Imports nothing else
from unitcost, and nothing heavier than the standard library.
"""
