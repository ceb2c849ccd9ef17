"""Durable writes (run/storage.py): folders made on first use, failures named."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from emopillars.run.storage import write_rows

SCHEMA = pa.schema([("id", pa.string()), ("n", pa.int64())])
ROWS = [{"id": "a", "n": 1}, {"id": "b", "n": 2}]


def test_a_write_makes_its_folders_and_hashes_the_bytes_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "shard-00000.parquet"
    table, sha256 = write_rows(path, ROWS, SCHEMA)
    assert pq.read_table(path).to_pylist() == ROWS == table.to_pylist()
    assert sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_a_file_where_a_folder_should_be_is_named_by_the_error(tmp_path: Path) -> None:
    # mkdir's own errors, which name the folder: the command line words them (cli/failures.py).
    blocker = tmp_path / "stage"
    blocker.write_text("not a folder")
    with pytest.raises(FileExistsError) as exists:
        write_rows(blocker / "shard-00000.parquet", ROWS, SCHEMA)
    assert exists.value.filename == str(blocker)
    with pytest.raises(NotADirectoryError) as not_a_folder:
        write_rows(blocker / "deeper" / "shard-00000.parquet", ROWS, SCHEMA)
    assert not_a_folder.value.filename == str(blocker / "deeper")
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ({"id": "c"}, "extra [], missing ['n']"),
        ({"id": "c", "n": 3, "x": 0}, "extra ['x'], missing []"),
        ({"id": "c", "m": 3}, "extra ['m'], missing ['n']"),
    ],
)
def test_a_row_whose_keys_are_not_the_schemas_is_refused_and_named(
    tmp_path: Path, bad: dict[str, object], said: str
) -> None:
    # pyarrow would drop the extra key and fill the missing one with null, silently.
    path = tmp_path / "shard-00000.parquet"
    for rows in ([bad], [*ROWS, bad], [bad, *ROWS]):
        with pytest.raises(ValueError, match=re.escape(f"does not match its schema: {said}")):
            write_rows(path, rows, SCHEMA)
        assert not path.exists()
