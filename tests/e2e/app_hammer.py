"""app_pool's pool, started with ``pool.start()``, while a thread of the pool process then keeps
SQLite busy (as a web app next to its pool would): every replacement worker must still start
cleanly. Stopped by SIGTERM."""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading

from app_pool import DATABASE_URL, pool

logging.basicConfig(level=logging.INFO, format="%(message)s")
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
pool.start()


def hammer() -> None:
    conn = sqlite3.connect(DATABASE_URL.removeprefix("sqlite:///"), check_same_thread=False)
    while not stop.is_set():
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        conn.execute("PRAGMA data_version").fetchone()


threading.Thread(target=hammer, daemon=True).start()
while not stop.wait(0.1):
    pass
pool.shutdown()
