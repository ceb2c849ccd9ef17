"""A run's dataset read as classifier examples: a dataset file that lacks a column the
examples need is a CorruptFileError naming the file and the fix, not a polars traceback."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from emopillars.classify.examples import read_examples
from emopillars.run.storage import CorruptFileError
from emopillars.stages.taxonomy import LABELS


@pytest.mark.parametrize("config", ["context_less", "context_aware"])
def test_examples_of_a_finished_run_hold_its_labels(run_dir: Path, config: str) -> None:
    examples = read_examples(run_dir, config, "train")  # type: ignore[arg-type]
    assert len(examples) > 0 and examples.targets.shape == (len(examples), len(LABELS))
    assert (examples.pairs is None) == (config == "context_less")


def test_a_dataset_file_without_a_needed_column_names_it_and_the_fix(run_dir: Path) -> None:
    [path] = sorted((run_dir / "dataset" / "context_less").glob("train-*.parquet"))
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["labels"]), path)
    with pytest.raises(CorruptFileError) as raised:
        read_examples(run_dir, "context_less", "train")
    assert str(raised.value) == (
        f"{path} is unreadable (it has no column 'labels'): run `emopillars assemble "
        f"{run_dir}` to build the dataset again"
    )
