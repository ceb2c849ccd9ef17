"""The answer journal: every finished engine answer of an unfinished shard, appended and
fsynced as it arrives, so a killed run never pays for the same request twice."""

from __future__ import annotations

import json
import os
from pathlib import Path

from emopillars.engines.base import Result


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, Result] = {}
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for key, result in items:
                handle.write(journal_line(key, result))
                self.answers[key] = result
            handle.flush()
            os.fsync(handle.fileno())

    def discard(self) -> None:
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
