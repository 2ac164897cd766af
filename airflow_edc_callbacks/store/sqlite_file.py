"""The SQLite file of an event store: created private, and never written once it left its path.

The file holds EDR tokens, so it is created with mode 0600 (SQLite gives its ``-wal`` and ``-shm`` files
the same mode). A process keeps connections to the file it opened; when that file is deleted or another
file is renamed over its path, those connections would go on writing into a file no other process reads.
So every connection checkout, every new connection and every committed write compares the file at the
path with the one the store opened (``st_dev``, ``st_ino``: one ``os.stat``), and from the first difference
on the store raises :class:`~airflow_edc_callbacks.exceptions.StoreUnavailableError` (the receiver
answers 503): nothing is acknowledged that is not in the file every reader opens. It does not reconnect
by itself: the old file's write-ahead log still sits beside the path and would be replayed into a new
file, so the processes that used the old file are restarted to go on (see docs/security.md).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from airflow_edc_callbacks.exceptions import StoreUnavailableError


class SqliteFileGuard:
    """Creates the store's SQLite file (mode 0600) if missing and checks it stays the file at its path.

    :param path: the database file.
    :raises OSError: the file cannot be created.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.suppress(FileExistsError):  # an existing file keeps its mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self.identity = self._identity()
        self.lost: str | None = None

    def _identity(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def check(self, *_args: Any) -> None:
        """Raise if the file at the path is no longer the one the store opened (and from then on).

        :raises StoreUnavailableError: it was deleted or replaced.
        """
        if self.lost is None:
            current = self._identity()
            if current != self.identity:
                self.lost = "deleted" if current is None else "replaced by another file"
        if self.lost is not None:
            raise StoreUnavailableError(
                f"The SQLite file {self.path} of the callback event store was {self.lost} while this process "
                "used it; nothing more is written to the old file. Restart the processes that used it "
                "(api-server, triggerer, workers) to go on with the file at that path."
            )

    def install(self, engine: Engine) -> None:
        """Check before SQLite opens (or would create) the path, and at every connection checkout."""
        event.listen(engine, "do_connect", self.check)
        event.listen(engine, "checkout", self.check)
