"""Thin shells users call: DBOS, handles, context managers, decorators."""
