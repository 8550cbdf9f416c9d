"""The worker pool (``ax.Pool``) and everything that runs tasks.

- :mod:`.pool` — ``Pool``: registration, ``start``/``run``/``shutdown``.
- :mod:`.supervisor` — the pool's main-process side (and in-process workers for ``memory://``).
- :mod:`.process_supervisor` — worker processes: replacements, reaper, log relay, stopping.
- :mod:`.forkserver` — the single-threaded process that forks every worker, and its standby.
- :mod:`.process` — a worker process: start-up, signals, tied to the pool (not its server).
- :mod:`.consumer` — the worker loop: lanes, slots, heartbeats, stopping.
- :mod:`.lifecycle` — one task: RUNNING, handler, outcome, COMPLETE/ERROR (``Task.execute()``).
- :mod:`.writer` — a worker's batched activity writes, outcomes and acknowledgements.
- :mod:`.reaping` — what is recorded when a queue hands a task out again or gives up on it.
- :mod:`.lanes`, :mod:`.channels`, :mod:`.logs`, :mod:`.registry` — small shared pieces.
"""
