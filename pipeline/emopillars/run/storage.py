"""Durable writes: write to a temporary name, fsync, rename into place. A reader, or a run
that resumes after a kill, sees either the old file or the complete new one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


class StorageError(OSError):
    """Writing failed (a full disk, a read-only folder); finished shards are untouched."""


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        with temporary_path.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary_path, path)
        _fsync_dir(path.parent)
    except OSError as error:
        raise StorageError(f"could not write {path}: {error}") from error
    finally:
        temporary_path.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    # from_pylist would drop keys the schema lacks and fill absent ones with nulls: silently.
    names = set(schema.names)
    for row in rows:
        if set(row) != names:
            raise ValueError(
                f"a row for {path} does not match its schema: extra "
                f"{sorted(set(row) - names)}, missing {sorted(names - set(row))}"
            )
    table = pa.Table.from_pylist(rows, schema=schema)
    write_table(path, table)


def write_table(path: Path, table: pa.Table, row_group_size: int = 20_000) -> None:
    with _atomic_path(path) as temporary:
        pq.write_table(table, temporary, row_group_size=row_group_size, write_page_index=True)


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def write_json(path: Path, value: Any) -> None:
    with _atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
