"""Durable writes: write to a temporary name, fsync, rename into place. A reader, or a run
that resumes after a kill, sees either the old file or the complete new one."""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from emopillars.messages import first_line

if TYPE_CHECKING:
    import polars as pl


class StorageError(OSError):
    """Writing failed (a full disk, a read-only folder); finished shards are untouched."""

    @classmethod
    def writing(cls, path: Path, error: OSError) -> StorageError:
        """Writing `path` failed with `error`: its errno and reason, naming `path` (not the
        temporary file it was being written under), so that the command line can say what
        to do (free some space, say) and where."""
        if error.errno is not None and error.strerror:
            return cls(error.errno, error.strerror, str(path))
        return cls(f"could not write {path}: {error}")


# What to do about a damaged file of a run folder, unless its reader knows better.
REBUILD = (
    "run `emopillars run` with the same config again to rebuild it (finished shards whose "
    "files are intact are kept)"
)


class CorruptFileError(StorageError):
    """A file of the run folder cannot be read as what it should be: torn, truncated or
    edited. The message names the file and what to do; `problem` says what is wrong."""

    def __init__(self, path: Path, problem: str, todo: str = REBUILD) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path} is unreadable ({problem}): {todo}")


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    renamed = False
    try:
        yield temporary_path
        with temporary_path.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary_path, path)
        renamed = True
        sync_folder(path.parent)
    except OSError as error:
        raise StorageError.writing(path, error) from error
    finally:
        if not renamed:
            temporary_path.unlink(missing_ok=True)


def _write_bytes(
    path: Path, data: bytes | memoryview, durable: bool = True, sync: bool = True
) -> None:
    """`_atomic_path` for bytes in memory: written, fsynced and closed through one
    descriptor (no reopening to fsync), then renamed into place and the folder fsynced.
    Not `durable`: renamed into place all the same, without the fsyncs (for a file whose
    loss in a power cut costs nothing). Not `sync`: the folder is left for the caller to
    fsync once (`sync_folder`) after writing several files into it."""
    # A folder that cannot be made (a file in its place) raises mkdir's own error, naming
    # the folder: the command line words it.
    handle, temporary = _temporary_file(path)
    renamed = False
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(handle, view) :]
            if durable:
                os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(temporary, path)
        renamed = True
        if durable and sync:
            sync_folder(path.parent)
    except OSError as error:
        raise StorageError.writing(path, error) from error
    finally:
        if not renamed:
            Path(temporary).unlink(missing_ok=True)


_WRITES = itertools.count()


def _temporary_file(path: Path) -> tuple[int, str]:
    """A new file beside `path` to write it under first, open for writing, and its name.
    Named by process and write, which no other writer uses, without mkstemp's random
    names and their Python work per file; mkstemp only where that name is taken, say by a
    process of the same id on another machine."""
    name = f"{path.parent}/.{path.name}.{os.getpid()}-{next(_WRITES)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        return os.open(name, flags, 0o600), name
    except (FileNotFoundError, NotADirectoryError):
        # The folder is new: made here, on the first write into it, and not checked (a
        # system call) on every write. A file in its way makes mkdir raise, naming it.
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(name, flags, 0o600), name
    except FileExistsError:
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def sync_folder(folder: Path) -> None:
    """Make the names of the files renamed into `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    write_rows(path, rows, schema)


def write_rows(
    path: Path, rows: list[dict[str, Any]], schema: pa.Schema, sync: bool = True
) -> tuple[pa.Table, str]:
    """Write rows as a Parquet file; the table written and the file's sha256, hashed from
    the bytes in memory (the runner records it without reading the file back). Not `sync`:
    the caller fsyncs the folder (`sync_folder`) before anything points at the file."""
    return write_shard_table(path, rows_table(rows, schema, path), sync)


def rows_table(rows: list[dict[str, Any]], schema: pa.Schema, path: Path | None = None) -> pa.Table:
    """The rows as an Arrow table of `schema`; ValueError, naming the first row that differs,
    unless every row's keys are the schema's names (the file it is for, `path`, named too)."""
    # from_pylist would drop keys the schema lacks and fill absent ones with nulls: silently.
    names = set(schema.names)
    # Every row's keys against the names, in C; the first row that differs is named.
    if not all(map(operator.eq, map(dict.keys, rows), itertools.repeat(names))):
        row = next(row for row in rows if row.keys() != names)
        where = "" if path is None else f" for {path}"
        raise ValueError(
            f"a row{where} does not match its schema: extra "
            f"{sorted(set(row) - names)}, missing {sorted(names - set(row))}"
        )
    # Column by column: the same table as from_pylist, in a third of its time; the rows
    # turned into columns by zip, in C.
    if len(schema.names) > 1 and rows:
        columns = zip(*map(operator.itemgetter(*schema.names), rows), strict=True)
        values = {name: list(column) for name, column in zip(schema.names, columns, strict=True)}
    else:
        values = {name: [row[name] for row in rows] for name in schema.names}
    return pa.Table.from_pydict(values, schema=schema)


def write_columns(
    path: Path, columns: dict[str, list[Any]], schema: pa.Schema, sync: bool = True
) -> tuple[pa.Table, str]:
    """`write_rows` for rows given as columns, one list of values per name of `schema`."""
    return write_shard_table(path, pa.Table.from_pydict(columns, schema=schema), sync)


def write_shard_table(path: Path, table: pa.Table, sync: bool = True) -> tuple[pa.Table, str]:
    """`write_rows` for rows already in Arrow: a run folder's Parquet file, written whole."""
    sink = pa.BufferOutputStream()
    # No page index and no column statistics: these files are read whole (by the next stage,
    # assembly, status), and both cost time to write and nothing to a whole read (the
    # dataset's files have them).
    pq.write_table(table, sink, row_group_size=20_000, write_statistics=False)
    data = memoryview(sink.getvalue())  # written and hashed where Arrow holds it: no copy
    _write_bytes(path, data, sync=sync)
    return table, hashlib.sha256(data).hexdigest()


def write_table(path: Path, table: pa.Table, row_group_size: int = 20_000) -> None:
    with _atomic_path(path) as temporary:
        pq.write_table(table, temporary, row_group_size=row_group_size, write_page_index=True)


@contextmanager
def _reading_parquet(path: Path, *errors: type[Exception]) -> Iterator[None]:
    """A reader's failure on a damaged file (torn, truncated, edited) as CorruptFileError
    naming it; a missing file stays FileNotFoundError."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError, *errors) as error:
        raise CorruptFileError(path, f"not a readable Parquet file: {first_line(error)}") from error


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a Parquet file; CorruptFileError when it is no Parquet file (truncated)."""
    rows: list[dict[str, Any]] = read_arrow(path).to_pylist()
    return rows


def read_arrow(path: Path) -> pa.Table:
    """A Parquet file as an Arrow table; CorruptFileError when it is no Parquet file."""
    with _reading_parquet(path):
        return pq.read_table(path)


def read_frame(path: Path) -> pl.DataFrame:
    """A Parquet file as a polars frame; CorruptFileError when it is no Parquet file."""
    import polars as pl  # not needed by the workers, who write through pyarrow

    with _reading_parquet(path, pl.exceptions.PolarsError):
        return pl.read_parquet(path)


def row_count(path: Path) -> int:
    """The rows of a Parquet file, from its footer; CorruptFileError when it has none."""
    with _reading_parquet(path):
        rows: int = pq.read_metadata(path).num_rows
    return rows


def write_json(path: Path, value: Any, durable: bool = True) -> None:
    data = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")
    _write_bytes(path, data, durable)


def read_json(path: Path, todo: str = REBUILD) -> Any:
    """The JSON value of a file; CorruptFileError, saying `todo`, when it holds none."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise CorruptFileError(
            path, f"not text: {error.reason} at byte {error.start}", todo
        ) from error
    except json.JSONDecodeError as error:
        raise CorruptFileError(
            path, f"not valid JSON: {error.msg}: line {error.lineno} column {error.colno}", todo
        ) from error
