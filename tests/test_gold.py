"""Labelled text to score against: every file form, label mappings, bad rows, and the Hub
path up to the network boundary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from emopillars.classify.gold import (
    GOEMOTIONS_REPO,
    GoldDataError,
    coverage_lines,
    load_grouping,
    read_goemotions,
    read_target,
)
from emopillars.stages.taxonomy import LABELS

ROWS = [("I love this!", [18]), ("What a mess.", [3, 10]), ("Okay then.", [27])]


def _tsv(path: Path) -> Path:
    lines = [f"{text}\t{','.join(map(str, ids))}\tid{n}" for n, (text, ids) in enumerate(ROWS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _expected_columns() -> list[list[int]]:
    return [sorted(ids) for _, ids in ROWS]


def _columns(gold: Any) -> list[list[int]]:
    return [sorted(int(i) for i in row.nonzero()[0]) for row in gold]


def test_goemotions_tsv(tmp_path: Path) -> None:
    target = read_target(str(_tsv(tmp_path / "dev.tsv")))
    assert target.texts == [text for text, _ in ROWS]
    assert target.names == LABELS
    assert _columns(target.gold) == _expected_columns()


@pytest.mark.parametrize("form", ["csv", "jsonl", "parquet"])
def test_table_forms_with_names_or_ids(tmp_path: Path, form: str) -> None:
    # labels as names in one row, ids in another: both spellings are GoEmotions labels
    records = [
        {"text": "I love this!", "labels": ["love"]},
        {"text": "What a mess.", "labels": ["3", "disapproval"]},
        {"text": "Okay then.", "labels": ["27"]},
    ]
    path = tmp_path / f"gold.{form}"
    if form == "csv":
        lines = ["text,labels"] + [f'"{r["text"]}","{",".join(r["labels"])}"' for r in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif form == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    target = read_target(str(path))
    assert _columns(target.gold) == _expected_columns()


def test_a_label_mapping_scores_in_its_groups(tmp_path: Path) -> None:
    mapping = tmp_path / "groups.json"
    mapping.write_text(json.dumps({"joy": ["love", "joy"], "anger": ["annoyance", "anger"]}))
    target = read_target(str(_tsv(tmp_path / "dev.tsv")), label_map=mapping)
    # neutral, covered by no group, stays a class of its own; disapproval belongs to no group
    assert target.names == ("joy", "anger", "neutral")
    assert target.gold.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    grouping = load_grouping(mapping)
    scores = [[0.0] * len(LABELS)]
    scores[0][LABELS.index("love")] = 0.7
    scores[0][LABELS.index("joy")] = 0.2
    scores[0][LABELS.index("anger")] = 0.4
    assert grouping.project(np.array(scores)).tolist() == [[0.7, 0.4, 0.0]]


def test_what_a_label_mapping_leaves_out_is_counted_not_dropped(tmp_path: Path) -> None:
    mapping = tmp_path / "groups.json"
    mapping.write_text(json.dumps({"joy": ["love", "joy"]}))
    path = tmp_path / "dev.jsonl"
    records = [
        {"text": "I love this!", "labels": ["love"]},
        {"text": "How dare you.", "labels": ["anger", "disapproval"]},  # no group takes either
        {"text": "Nice, but no.", "labels": ["joy", "10"]},  # 10: disapproval, by id
        {"text": "Okay then.", "labels": ["neutral"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    target = read_target(str(path), label_map=mapping)
    assert target.gold.tolist() == [[1, 0], [0, 0], [1, 0], [0, 1]]
    assert target.coverage() == {
        "gold_labels_not_scored": {"anger": 1, "disapproval": 2},
        "texts_without_gold_labels": 1,
    }
    assert coverage_lines(target.coverage()) == [
        "not scored (outside the label mapping): 3 gold labels (anger 1, disapproval 2); "
        "1 texts are left with no gold label"
    ]
    assert target.head(1).coverage() == {
        "gold_labels_not_scored": {},
        "texts_without_gold_labels": 0,
    }
    assert target.head(2).coverage()["texts_without_gold_labels"] == 1
    # Without a mapping every gold label is scored, and nothing is said.
    whole = read_target(str(path))
    assert whole.coverage() == {"gold_labels_not_scored": {}, "texts_without_gold_labels": 0}
    assert coverage_lines(whole.coverage()) == []


def test_gold_labels_may_be_group_names(tmp_path: Path) -> None:
    mapping = tmp_path / "groups.json"
    mapping.write_text(json.dumps({"joy": ["love", "joy"], "shame": ["embarrassment"]}))
    path = tmp_path / "isear.jsonl"
    path.write_text(json.dumps({"text": "I blushed.", "labels": "shame"}) + "\n")
    target = read_target(str(path), label_map=mapping)
    assert target.gold.tolist() == [[0, 1, 0]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("\t3\tx\n", "line 1: no text"),
        ("fine\tfury\tx\n", r"labels \['fury'\] are not GoEmotions labels \(names or ids"),
        ("fine\t\tx\n", "line 1: no labels"),
        ("one field only\n", "expected text<TAB>label ids"),
    ],
)
def test_bad_rows_are_errors_naming_the_row(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GoldDataError, match=message):
        read_target(str(path))


def test_missing_columns_and_files(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps({"sentence": "hi", "labels": [1]}) + "\n")
    with pytest.raises(GoldDataError, match="no text column"):
        read_target(str(path))
    with pytest.raises(GoldDataError, match="no such file"):
        read_target(str(tmp_path / "absent.tsv"))
    with pytest.raises(GoldDataError, match="is a folder, not a file"):
        read_target(str(tmp_path))
    (tmp_path / "gold.txt").write_text("x")
    with pytest.raises(GoldDataError, match="expected one of"):
        read_target(str(tmp_path / "gold.txt"))
    bad_map = tmp_path / "map.json"
    bad_map.write_text(json.dumps({"joy": ["happiness"]}))
    with pytest.raises(GoldDataError, match="not GoEmotions labels"):
        read_target(str(_tsv(tmp_path / "dev.tsv")), label_map=bad_map)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({}, "needs at least one group"),
        ({"joy": ["joy"], "calm": []}, r"the groups \['calm'\] take in no label"),
        ({"joy": ["joy", "love"], "warmth": ["love"]}, r"more than one group \{'love'"),
    ],
)
def test_a_label_mapping_that_cannot_score_is_an_error(
    tmp_path: Path, mapping: dict[str, list[str]], message: str
) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps(mapping))
    with pytest.raises(GoldDataError, match=message):
        read_target(str(_tsv(tmp_path / "dev.tsv")), label_map=path)


def test_a_gold_file_that_is_not_parquet_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "gold.parquet"
    path.write_bytes(b"PAR1 but not really\n" * 4)
    with pytest.raises(GoldDataError, match=r"gold.parquet is not a readable Parquet file"):
        read_target(str(path))


def test_goemotions_is_asked_of_the_hub_as_the_simplified_config() -> None:
    asked: list[tuple[Any, ...]] = []

    def loader(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        asked.append((*args, kwargs))
        return [{"text": "Thanks a lot!", "labels": [15], "id": "x"}]

    target = read_target("goemotions:validation", loader=loader)
    assert asked == [(GOEMOTIONS_REPO, "simplified", {"split": "validation"})]
    assert target.source == "goemotions:validation"
    assert _columns(target.gold) == [[15]]
    read_target("goemotions", loader=loader)
    assert asked[-1][2] == {"split": "test"}
    with pytest.raises(GoldDataError, match="no split 'dev'"):
        read_target("goemotions:dev", loader=loader)


def test_an_unreachable_hub_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real `datasets` loader, offline: the network boundary, reached and reported.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-emopillars-test-cache")
    with pytest.raises(GoldDataError, match="offline, pass a local copy"):
        read_goemotions("test")
