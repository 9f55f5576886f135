"""Storage: the only place SQL lives.

One module per table family (``workflows``, ``operations``, ``transactions``,
``executors``, ...). Functions take the connection first so the caller owns
the transaction, and return small frozen dataclasses. PostgreSQL/SQLite
differences are confined to :mod:`dbos._storage.dialect`.
"""
