"""A model file's content hash, computed once per file version.

Hashing a GGUF file reads all of it (gigabytes for a 7B model), and every runner needs the
hash (once per Ray task). It is kept by resolved path, size and modification time, in memory
and in a small cache file (`$XDG_CACHE_HOME/emopillars/model-hashes.json`): a file rewritten
in place gets a new mtime, so a stale hash is never used. The cache file is a convenience; when
it cannot be read or written, the hash is computed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from emopillars.hashing import file_hash

_MEMORY: dict[str, str] = {}


def model_file_hash(path: Path) -> str:
    """sha256 of the file's bytes, as `file_hash` gives it."""
    resolved = path.resolve()
    stat = resolved.stat()
    key = f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}"
    if key in _MEMORY:
        return _MEMORY[key]
    cache = _cache_file()
    known = _read(cache)
    digest = known.get(key)
    if not isinstance(digest, str):
        digest = file_hash(resolved)
        _write(cache, {**known, key: digest})
    _MEMORY[key] = digest
    return digest


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "emopillars" / "model-hashes.json"


def _read(cache: Path) -> dict[str, object]:
    try:
        value = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write(cache: Path, entries: dict[str, object]) -> None:
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(entries, out)
        os.replace(temporary, cache)
    except OSError:
        pass  # a read-only home: the hash is computed again next time
