"""The answer journal: every finished engine answer of an unfinished shard, appended as it
arrives, so a killed run never pays for the same request twice.

Each arrival is written at once: a killed process (SIGKILL, a preempted job, the OOM killer)
loses none of it, since written bytes survive their process in the operating system's cache.
Only a machine that goes down loses what is not yet fsynced, and a journal is fsynced at most
once per SYNC_SECONDS: an fsync per arrival would stall the engine between its steps on a slow
file system (NFS or Lustre fsyncs take milliseconds, a decode step about ten), while a
crashed machine then asks again for at most that last second of answers."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import TextIO

from emopillars.engines.base import Result
from emopillars.run.storage import StorageError

SYNC_SECONDS = 1.0


class Journal:
    def __init__(self, path: Path, sync_seconds: float = SYNC_SECONDS) -> None:
        self.path = path
        self.answers: dict[str, Result] = {}
        self.sync_seconds = sync_seconds
        self._synced_at = time.monotonic()
        self._handle: TextIO | None = None
        if path.exists():
            self._load()

    def _load(self) -> None:
        with self.path.open("rb") as handle:
            for line in handle:
                try:
                    entry = json.loads(line.decode("utf-8"))
                    self.answers[entry["key"]] = Result(**entry["result"])
                except (ValueError, KeyError, TypeError):
                    # The last line of a killed run may be torn (or a line damaged otherwise,
                    # not UTF-8 or not an entry): its request is simply sent again.
                    continue

    def record(self, items: list[tuple[str, Result]]) -> None:
        try:
            handle = self._handle
            if handle is None:
                # Opened on the first answer and kept open until `close`: with a streaming
                # engine answers arrive one or a few at a time, and opening the file (and
                # checking its folder) for each arrival cost twice the writing and more.
                self.path.parent.mkdir(parents=True, exist_ok=True)
                handle = self._handle = self.path.open("a", encoding="utf-8")
            for key, result in items:
                handle.write(journal_line(key, result))
                self.answers[key] = result
            handle.flush()
            now = time.monotonic()
            if now - self._synced_at >= self.sync_seconds:
                os.fsync(handle.fileno())
                self._synced_at = now
        except OSError as error:  # a full disk: a write's own error names no file
            # Closing flushes what the failed write left buffered, which fails the same way:
            # that second error would hide this one, which says which file.
            with contextlib.suppress(OSError):
                self.close()
            raise StorageError.writing(self.path, error) from error

    def close(self) -> None:
        """Close the file (answers recorded later open it again)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


_QUOTE = json.encoder.encode_basestring_ascii


def journal_line(key: str, result: Result) -> str:
    """`json.dumps({"key": key, "result": result.__dict__}) + "\\n"`, written out: a third of
    the time, on a path every answer takes. tests/test_resume.py holds them equal."""
    error = "null" if result.error is None else _QUOTE(result.error)
    return (
        f'{{"key": {_QUOTE(key)}, "result": {{"text": {_QUOTE(result.text)}, '
        f'"finish_reason": {_QUOTE(result.finish_reason)}, '
        f'"prompt_tokens": {result.prompt_tokens:d}, '
        f'"completion_tokens": {result.completion_tokens:d}, "error": {error}}}}}\n'
    )
