"""One process per state directory: an advisory OS lock on ``<state>/node.lock``.

Two nodes on one directory would interleave their logs and share one node id,
which every peer would see as one node forking its history. ``DirLock`` takes
an exclusive ``flock`` that the kernel drops when the process dies, however it
dies, so a crash never leaves a stale lock behind; the file's text (pid and
host) is only there to name the holder in the refusal.

flock is per open file, so a second ``DirLock`` in the same process is refused
too (two ``seedfl.Node`` objects on one directory). This module knows nothing
of what the directory holds. On systems without ``fcntl`` (Windows) it locks
nothing and says so in ``held``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import IO

__all__ = ["DirLock", "DirLocked"]


class DirLocked(Exception):
    """Another process (or another node in this one) holds the directory."""


class DirLock:
    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "node.lock"
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        """Take the lock or raise DirLocked naming the holder; never waits."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not a POSIX system
            return
        if self._handle is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # "a+": opening must not truncate the holder's pid before we know we hold it.
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DirLocked(f"{self.path.parent} is in use by {holder}; stop that node "
                            "first, or give this one another --state-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays: removing it would race a
        process that opened it and is about to lock it."""
        if self._handle is not None:
            self._handle.close()  # closing the file drops the flock
            self._handle = None
