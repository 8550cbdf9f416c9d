"""The worker pool (``ax.Pool``) and everything that runs tasks.

- :mod:`.pool` — ``Pool``: registration, ``start``/``run``/``shutdown``.
- :mod:`.supervisor` — the pool's main-process side (and in-process workers for ``memory://``).
- :mod:`.process_supervisor` — worker processes: replacements, reaper, log relay, stopping.
- :mod:`.forkserver` — the single-threaded process that forks every worker, and its standby.
- :mod:`.process` — a worker process: start-up, signals, tied to the pool (not its server).
- :mod:`.consumer` — the worker loop: take → run → finish, lanes, slots, heartbeats, stopping.
- :mod:`.sink` — where a running task's lines and outcome go (the worker's lifecycle sink).
- :mod:`.writer` — a worker's batched activity lines (group commit, each activity in order).
- :mod:`.outbox` — after a task's final line: its outcome stored, then its lease acknowledged.
- :mod:`.health` — whether the worker may take another task (backend outages, backpressure).
- :mod:`.own` — the tasks a worker runs: creating an activity its producer has not (yet).
- :mod:`.reaping` — what is recorded when a queue hands a task out again or gives up on it.
- :mod:`.channels`, :mod:`.logs`, :mod:`.stager` — small shared pieces.

What is not the worker's lives in core: one task's lifecycle (:mod:`agentexec.lifecycle`,
``Task.execute()`` runs it anywhere), the handler registry (:mod:`agentexec.registry`) and
queue lanes (:mod:`agentexec.lanes`); nothing outside this package imports it but ``ax.Pool``.
"""
