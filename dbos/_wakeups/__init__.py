"""Wakeups: hints that something changed in the database, never the truth.

Publishers notify after their transaction commits; every waiter subscribes
before it reads the database and also polls on a timer, so a lost hint costs
latency and never correctness.
"""
