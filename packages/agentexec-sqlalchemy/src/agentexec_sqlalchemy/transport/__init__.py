"""The embedded transport on SQL: queue, results and events in tables of the same database.

- :mod:`.models` — the tables: queue, delayed tasks, dead letters, consumers, results, events.
- :mod:`.queue`, :mod:`.results`, :mod:`.events` — the three backends.
- :mod:`.common` — what they share: engine, schema, transactions, waiting.
- :mod:`.batching`, :mod:`.statements`, :mod:`.sqlite_lock` — the hot path's writes.
- :mod:`.notify`, :mod:`.watch`, :mod:`.watch_pg`, :mod:`.watch_sqlite` — wake-ups across
  processes (PostgreSQL ``LISTEN``/``NOTIFY``, SQLite's data version).
"""
