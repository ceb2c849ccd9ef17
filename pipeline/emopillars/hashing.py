"""Stable content hashes: the same value always gives the same hex digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def stable_hash(value: Any, length: int = 16) -> str:
    """Hash a JSON-serialisable value independently of dict order."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: a path with bytes that are not UTF-8 (a file name from another system,
    # a C locale) reaches Python as lone surrogates; hashed as they are, not refused. Text
    # without them encodes as plain UTF-8, so no existing hash changes.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
