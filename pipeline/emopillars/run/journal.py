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
        with self.path.open("r", encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    # The last line of a killed run may be torn; its request is simply re-sent.
                    continue
                self.answers[entry["key"]] = Result(**entry["result"])

    def record(self, items: list[tuple[str, Result]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for key, result in items:
                handle.write(json.dumps({"key": key, "result": result.__dict__}) + "\n")
                self.answers[key] = result
            handle.flush()
            os.fsync(handle.fileno())

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
