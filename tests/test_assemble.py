"""The assembled dataset: loadable offline with `datasets`, split by story, deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fake_config
from emopillars.api import run_pipeline
from emopillars.dataset.assemble import IncompleteRunError, assemble, split_of_stories
from emopillars.run.layout import RunLayout
from emopillars.run.plan import read_plan
from emopillars.stages.taxonomy import LABELS


@pytest.fixture
def dataset_dir(corpus: Path, tmp_path: Path) -> Path:
    config = fake_config(corpus, tmp_path / "run")
    run_pipeline(config)
    return config.output_dir / "dataset"


def test_both_configs_load_offline_with_declared_features(dataset_dir: Path) -> None:
    from datasets import ClassLabel, List, Value, load_dataset

    less = load_dataset(str(dataset_dir), "context_less")
    aware = load_dataset(str(dataset_dir), "context_aware")
    assert set(less) == set(aware) == {"train", "validation", "test"}
    for data in (less, aware):
        features = data["train"].features
        assert features["labels"] == List(ClassLabel(names=list(LABELS)))
        assert features["scores"] == List(Value("float64"))
        row = data["train"][0]
        assert len(row["labels"]) == len(row["scores"]) >= 1
        assert all(score >= 0.3 for score in row["scores"])
    assert {"context", "utterance", "original_utterance"} <= set(aware["train"].column_names)
    assert "context" not in less["train"].column_names


def test_no_story_crosses_splits_and_ids_are_unique(dataset_dir: Path) -> None:
    from datasets import load_dataset

    for name in ("context_less", "context_aware"):
        data = load_dataset(str(dataset_dir), name)
        stories = {split: set(data[split]["story_id"]) for split in data}
        assert not stories["train"] & stories["validation"]
        assert not stories["train"] & stories["test"]
        assert not stories["validation"] & stories["test"]
        ids = [i for split in data for i in data[split]["id"]]
        assert len(ids) == len(set(ids))


def test_card_declares_configs_and_files_follow_the_hub_layout(dataset_dir: Path) -> None:
    card = (dataset_dir / "README.md").read_text()
    assert card.startswith("---\n") and "config_name: context_less" in card
    assert "default: true" in card and "multi-label-classification" in card
    assert "fake engine" in card
    names = sorted(p.relative_to(dataset_dir).as_posix() for p in dataset_dir.rglob("*.parquet"))
    assert names == sorted(
        f"{config}/{split}-00000-of-00001.parquet"
        for config in ("context_less", "context_aware")
        for split in ("train", "validation", "test")
    )


def test_splits_follow_fractions_and_nest_test_sets() -> None:
    stories = [f"story-{i}" for i in range(200)]
    less = split_of_stories(stories, seed=0, fractions=(0.8, 0.1, 0.1))
    aware = split_of_stories(stories, seed=0, fractions=(0.9, 0.05, 0.05))
    assert sorted(less.values()).count("train") == 160
    assert sorted(aware.values()).count("test") == 10
    aware_test = {s for s, split in aware.items() if split == "test"}
    assert all(less[s] == "test" for s in aware_test)
    assert split_of_stories(stories, seed=1, fractions=(0.8, 0.1, 0.1)) != less
    few = split_of_stories(["a", "b", "c"], seed=0, fractions=(0.8, 0.1, 0.1))
    assert sorted(few.values()) == ["test", "train", "validation"]


def test_assembly_refuses_an_unfinished_run(dataset_dir: Path) -> None:
    run_dir = dataset_dir.parent
    (run_dir / "manifest" / "labels" / "shard-00001.json").unlink()
    with pytest.raises(IncompleteRunError, match="labels/shard-00001"):
        assemble(run_dir, read_plan(RunLayout(run_dir)), seed=0, license_id=None)
