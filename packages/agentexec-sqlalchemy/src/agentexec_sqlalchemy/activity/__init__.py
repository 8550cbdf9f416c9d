"""The activity store on SQL: ``ax.Base``, the activity tables and ``SQLActivityStore``.

- :mod:`.models` — ``ax.Base``, ``Activity`` and ``ActivityLog`` (the ORM the original shipped).
- :mod:`.store` — ``SQLActivityStore``: what ``ax.activity`` calls, on SQLite or PostgreSQL.
- :mod:`.queries`, :mod:`.writes`, :mod:`.pg_writes` — its reads and writes, built once.
- :mod:`.session`, :mod:`.unit_of_work` — the process-global session and the one transaction
  around each store call.
"""
