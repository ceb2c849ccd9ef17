"""The answers of one stage shard: the journal of an attempt in progress, the answers kept
from the shard's last finished computation, and the file of kept answers it leaves behind.

Every engine answer is kept next to the shard's output (<stage>/answers-NNNNN.parquet), keyed
by its request key, a hash of everything that was sent. When a shard is computed again, say
because a parser or a threshold changed, each request whose answer is kept is answered from
here instead of the engine: a better parser never pays the model twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from emopillars.engines import Result
from emopillars.run import tables
from emopillars.run.journal import Journal
from emopillars.run.storage import write_columns


def read_answers(path: Path) -> dict[str, Result]:
    """Kept answers by request key; none when the file is missing (a shard made before
    answers were kept, or one whose answers file was deleted)."""
    if not path.exists():
        return {}
    rows = pq.read_table(path).to_pylist()
    return {
        row["key"]: Result(
            text=row["text"],
            finish_reason=row["finish_reason"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            error=row["error"],
        )
        for row in rows
    }


class ShardAnswers:
    """Where a shard's answers come from, and which ones its computation used."""

    def __init__(self, journal: Journal, kept: dict[str, Result]) -> None:
        self.journal = journal
        self.kept = kept
        self.used: dict[str, tuple[str, Result]] = {}  # key -> (call, answer)
        self.replayed = 0  # answered from the journal of an interrupted attempt
        self.reparsed = 0  # answered from the kept answers of a finished computation

    @property
    def has_earlier(self) -> bool:
        """Whether any request may be answered without the engine (`lookup`)."""
        return bool(self.journal.answers or self.kept)

    def lookup(self, key: str) -> Result | None:
        """A usable earlier answer to this request. An engine error (a dead server, a prompt
        over the context) is no answer: its request is sent again."""
        journaled = self.journal.answers.get(key)
        if journaled is not None and journaled.finish_reason != "error":
            self.replayed += 1
            return journaled
        kept = self.kept.get(key)
        if kept is not None and kept.finish_reason != "error":
            self.reparsed += 1
            return kept
        return None

    def record(self, answered: list[tuple[str, Result]]) -> None:
        """Journal fresh engine answers before anything uses them (run/journal.py)."""
        self.journal.record(answered)

    def use(self, call: str, keys: list[str], results: list[Result]) -> None:
        """Note the answers these requests of `call` got, to keep them."""
        self.used.update(zip(keys, [(call, result) for result in results], strict=True))

    def write(self, path: Path, sync: bool = True) -> str:
        """Keep the answers this computation used, in key order (a deterministic file);
        returns the file's sha256. Not `sync`: as `write_columns`."""
        keys = sorted(self.used)
        used = [self.used[key] for key in keys]
        results = [result for _, result in used]
        columns: dict[str, list[Any]] = {
            "key": keys,
            "call": [call for call, _ in used],
            "text": [result.text for result in results],
            "finish_reason": [result.finish_reason for result in results],
            "prompt_tokens": [result.prompt_tokens for result in results],
            "completion_tokens": [result.completion_tokens for result in results],
            "error": [result.error for result in results],
        }
        return write_columns(path, columns, tables.ANSWER, sync)[1]
