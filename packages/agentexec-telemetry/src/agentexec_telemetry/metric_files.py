"""``/metrics`` of a multi-process pool: every process's metric file, read only once it is whole.

prometheus-client's ``MultiProcessCollector`` reads every ``*.db`` file of the directory. A
process makes its file by opening it (empty) and then sizing it; a scrape that falls between
the two fails whole (``struct.error`` unpacking the empty file: HTTP 500). A new worker process
makes its files on its first task, so a pool that replaces workers meets this now and then.
This collector leaves out a file until it has its header; it has no counts to give before.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client.multiprocess import MultiProcessCollector

#: the size of a metric file's header (the used-bytes count and padding): a file shorter than
#: this has been made but not yet sized
HEADER_BYTES = 8


def whole_files(directory: str) -> list[str]:
    """The ``*.db`` metric files of ``directory`` that have their header."""
    files = []
    for path in glob.glob(os.path.join(directory, "*.db")):
        try:
            if os.path.getsize(path) >= HEADER_BYTES:
                files.append(path)
        except FileNotFoundError:  # a dead process's live gauge, removed meanwhile
            continue
    return files


class WholeFilesCollector(MultiProcessCollector):  # type: ignore[misc]
    """``MultiProcessCollector`` over :func:`whole_files`."""

    def __init__(self, registry: Any, path: str) -> None:
        self._directory = path
        super().__init__(registry, path=path)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Any]:
        return self.merge(whole_files(self._directory), accumulate=True)  # type: ignore[no-untyped-call,no-any-return]
