"""A run's dataset read as classifier examples: a dataset file that lacks a column the
examples need is a CorruptFileError naming the file and the fix, not a polars traceback; and
a model is trained or scored only on a dataset that is as its assembly wrote it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from emopillars.classify.examples import (
    DatasetChangedError,
    DatasetMissingError,
    read_examples,
    require_assembled,
)
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


def _first_split(run_dir: Path, split: str = "train") -> Path:
    return next((run_dir / "dataset" / "context_less").glob(f"{split}-*.parquet"))


@pytest.mark.parametrize(
    ("damage", "what"),
    [
        (lambda run: pq.write_table(pq.read_table(_first_split(run)).slice(0, 2),
                                    _first_split(run)), "was edited after assembly"),
        (lambda run: _first_split(run, "test").unlink(), "was deleted after assembly"),
        (lambda run: shutil.copyfile(_first_split(run), run / "dataset/context_less/extra.parquet"),
         "was added after assembly"),
        (lambda run: (run / "dataset/manifest.json").unlink(), "is missing"),
    ],
    ids=["edited", "deleted", "added", "no manifest"],
)  # fmt: skip
def test_a_dataset_changed_after_assembly_is_refused_naming_the_file(
    run_dir: Path, damage: Callable[[Path], object], what: str
) -> None:
    require_assembled(run_dir, ["context_less", "context_aware"])  # as assembled: no error
    damage(run_dir)
    with pytest.raises(DatasetChangedError) as raised:
        require_assembled(run_dir, ["context_less"])
    assert what in str(raised.value)
    assert str(raised.value).endswith(f"`emopillars assemble {run_dir}` builds the dataset again")


def test_only_the_configs_used_are_checked(run_dir: Path) -> None:
    _first_split(run_dir).unlink()
    require_assembled(run_dir, ["context_aware"])  # context_less is not read


def test_a_folder_that_is_no_run_or_not_assembled_says_which(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetMissingError, match="is not an emopillars run folder"):
        require_assembled(tmp_path / "nowhere", ["context_less"])
    shutil.rmtree(run_dir / "dataset")
    with pytest.raises(DatasetMissingError, match="has no assembled dataset yet: finish the run"):
        require_assembled(run_dir, ["context_less"])
