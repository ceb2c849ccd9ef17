"""A lock file with a note beside it that names its holder.

The lock itself is the operating system's, through `filelock` (flock on Unix): the kernel
releases it when its holder exits, however it exits, so a process killed with SIGKILL never
leaves a lock behind. The note, `NAME.json` next to the lock file, only tells whoever finds the
lock taken who holds it (host, pid, since when, what command). A note can outlive its holder (a
kill -9 leaves it), so it is believed only while its lock is actually held: whoever acquires
the lock next overwrites it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from emopillars.run.storage import write_json

log = logging.getLogger("emopillars")

# Errors that mean "this folder cannot be written from here" (a read-only mount, another
# user's folder): nobody can write the run folder through it, so there is nothing to lock.
READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its note says."""

    command: str
    host: str
    pid: int
    since: str  # UTC, to the second: hosts of a cluster may sit in different time zones

    @classmethod
    def of_this_process(cls, command: str) -> Holder:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return cls(command=command, host=socket.gethostname(), pid=os.getpid(), since=now)

    def describe(self) -> str:
        return f"{self.command} (pid {self.pid} on host {self.host}, since {self.since})"


def describe(holder: Holder | None) -> str:
    if holder is None:
        return "another process (which has not written its name yet)"
    return holder.describe()


class NotedLock:
    """One lock file and its note. Not reentrant: a second NotedLock on the same path, even
    in this process, finds it taken (flock locks belong to an open file, not a process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.note = path.with_name(path.name + ".json")
        self._lock = FileLock(path)

    def try_acquire(self, wait: float = 0.0) -> bool:
        """Take the lock, waiting up to `wait` seconds (-1: for as long as it takes); False
        when another holds it. OSError when the lock file cannot be created or opened."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=wait, poll_interval=0.05 if wait >= 0 else 0.5)
        except Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()

    def announce(self, holder: Holder) -> None:
        """Write the note. Best effort: a lock without a note still excludes. Not fsynced:
        a note outlives no crash that matters (the lock dies with its holder)."""
        try:
            write_json(self.note, asdict(holder), durable=False)
        except OSError as error:
            log.debug("could not write %s: %s", self.note, error)

    def withdraw(self) -> None:
        """Remove the note (while the lock is still held, so no one else's note is lost)."""
        try:
            self.note.unlink(missing_ok=True)
        except OSError as error:
            log.debug("could not remove %s: %s", self.note, error)

    def holder(self) -> Holder | None:
        """The holder the note names; None when there is no readable note."""
        try:
            value = json.loads(self.note.read_text(encoding="utf-8"))
            return Holder(
                command=str(value["command"]),
                host=str(value["host"]),
                pid=int(value["pid"]),
                since=str(value["since"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
