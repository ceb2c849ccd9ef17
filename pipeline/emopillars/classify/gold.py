"""Human-labelled text to score against: GoEmotions from the Hub, or a local file.

A TARGET is `goemotions` (the "simplified" test split), `goemotions:SPLIT`, or a path: a
GoEmotions TSV (text, comma-separated label ids, id; no header), or a CSV, JSONL or Parquet
file with `text` and `labels` columns (labels as names or ids, a list or a comma-separated
string). With a label mapping ({group: [GoEmotions labels]}, like the Ekman grouping), scores
are taken in the groups' space: a classifier's group score is its best member's, and neutral,
the absence of emotion in every scheme, stays a class of its own unless the mapping covers it;
GoEmotions labels that no group takes in are outside the mapped set and are not scored, but
counted: every report says which gold labels it left out and how many sentences that left with
no gold label at all (sentences on which any prediction is a false positive).

Every row must make sense: a row without text, or with a label that is neither a GoEmotions
label nor a group, is an error naming the file and row, never a row silently left out.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emopillars.classify.metrics import Matrix
from emopillars.messages import first_line
from emopillars.stages.taxonomy import LABELS, NEUTRAL

GOEMOTIONS_REPO = "google-research-datasets/go_emotions"
GOEMOTIONS_SPLITS = ("train", "validation", "test")
SUFFIXES = (".tsv", ".csv", ".jsonl", ".parquet")


class GoldDataError(ValueError):
    """A target that cannot be read as labelled text; the message names what and where."""


@dataclass(frozen=True)
class Grouping:
    """GoEmotions labels regrouped into a coarser label set (Ekman, ISEAR-style sets)."""

    groups: dict[str, tuple[str, ...]]  # group -> its GoEmotions labels

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.groups)

    def group_of(self, label: str) -> str | None:
        for group, members in self.groups.items():
            if label in members:
                return group
        return None

    def project(self, probabilities: Matrix) -> Matrix:
        """(examples, 28) scores -> (examples, groups): each group's best member."""
        columns = [
            np.asarray(probabilities)[:, [LABELS.index(m) for m in members]].max(axis=1)
            for members in self.groups.values()
        ]
        return np.stack(columns, axis=1)


def load_grouping(path: Path) -> Grouping:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GoldDataError(f"cannot read the label mapping {path}: {error}") from error
    if not isinstance(raw, dict) or not all(
        isinstance(members, list) and all(isinstance(m, str) for m in members)
        for members in raw.values()
    ):
        raise GoldDataError(f"{path}: a label mapping is a JSON object {{group: [labels]}}")
    groups = {str(group): tuple(members) for group, members in raw.items()}
    if not groups:
        raise GoldDataError(f"{path}: a label mapping needs at least one group")
    empty = [group for group, members in groups.items() if not members]
    if empty:
        raise GoldDataError(f"{path}: the groups {empty} take in no label: give each a label")
    unknown = sorted({m for members in groups.values() for m in members} - set(LABELS))
    if unknown:
        raise GoldDataError(f"{path}: {unknown} are not GoEmotions labels")
    # A gold label counts for one group; a label in two would be scored in both for a model
    # and in the first alone for the gold labels.
    owners: dict[str, list[str]] = {}
    for group, members in groups.items():
        for member in dict.fromkeys(members):
            owners.setdefault(member, []).append(group)
    shared = {label: found for label, found in owners.items() if len(found) > 1}
    if shared:
        raise GoldDataError(
            f"{path}: labels in more than one group {shared}: put each label in one group"
        )
    if NEUTRAL not in owners and NEUTRAL not in groups:
        groups[NEUTRAL] = (NEUTRAL,)
    return Grouping(groups)


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with their gold labels, as a 0/1 matrix over `names`."""

    source: str
    texts: list[str]
    gold: Matrix
    names: tuple[str, ...]
    grouping: Grouping | None = None
    # Per text, its gold labels that no group of the mapping takes in (not scored).
    unscored: tuple[tuple[str, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, limit: int | None) -> LabelledTexts:
        if limit is None or limit >= len(self.texts):
            return self
        return LabelledTexts(
            self.source,
            self.texts[:limit],
            self.gold[:limit],
            self.names,
            self.grouping,
            self.unscored[:limit],
        )

    def coverage(self) -> dict[str, Any]:
        """What a label mapping left out of the scores: each gold label outside it (by
        GoEmotions name, with its count), and the texts left with no gold label at all."""
        outside = Counter(label for labels in self.unscored for label in labels)
        return {
            "gold_labels_not_scored": dict(sorted(outside.items())),
            "texts_without_gold_labels": int((np.asarray(self.gold).sum(axis=1) == 0).sum()),
        }

    def scores_in_space(self, probabilities: Matrix) -> Matrix:
        """A classifier's (examples, 28) scores in this set's label space."""
        return probabilities if self.grouping is None else self.grouping.project(probabilities)


def coverage_lines(report: dict[str, Any]) -> list[str]:
    """For a terminal: what a label mapping left out of a report's scores (`coverage`), when
    it left anything."""
    outside = report.get("gold_labels_not_scored") or {}
    if not outside:
        return []
    labels = ", ".join(f"{label} {count}" for label, count in outside.items())
    return [
        f"not scored (outside the label mapping): {sum(outside.values())} gold labels ({labels});"
        f" {report['texts_without_gold_labels']} texts are left with no gold label"
    ]


def _label_index(
    names: Sequence[str], grouping: Grouping | None
) -> dict[str, tuple[int | None, str]]:
    """Every spelling a gold label may take (name, id) -> (its column, its name); the column
    is None for a GoEmotions label that no group of the mapping takes in (it is outside the
    mapped label set)."""
    index: dict[str, tuple[int | None, str]] = {}
    for label_id, label in enumerate(LABELS):
        target = label if grouping is None else grouping.group_of(label)
        column = None if target is None else names.index(target)
        index[label] = index[str(label_id)] = (column, label)
    if grouping is not None:
        index.update({group: (names.index(group), group) for group in grouping.names})
    return index


def _split_labels(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return _split_labels(json.loads(text))
        return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(value, (int, np.integer)):
        return [str(int(value))]
    if isinstance(value, Iterable):
        return [str(item).strip() for item in value]
    raise TypeError(f"labels must be names, ids or a list of them, not {type(value).__name__}")


def labelled_texts(
    source: str, rows: Iterable[tuple[str, Any, str]], grouping: Grouping | None = None
) -> LabelledTexts:
    """Build the set from (text, labels, where) rows; `where` names a row in errors."""
    names = LABELS if grouping is None else grouping.names
    index = _label_index(names, grouping)
    texts: list[str] = []
    gold_rows: list[list[int]] = []
    unscored: list[tuple[str, ...]] = []
    for text, labels, where in rows:
        if not isinstance(text, str) or not text.strip():
            raise GoldDataError(f"{source} {where}: no text")
        try:
            raw = _split_labels(labels)
        except (TypeError, ValueError) as error:
            raise GoldDataError(f"{source} {where}: unreadable labels {labels!r}") from error
        unknown = [label for label in raw if label not in index]
        if unknown:
            known = "GoEmotions labels (names or ids 0-27)"
            known = f"neither {known} nor groups of the label mapping" if grouping else known
            raise GoldDataError(f"{source} {where}: labels {unknown} are not {known}")
        if not raw:
            raise GoldDataError(f"{source} {where}: no labels")
        texts.append(text)
        found = [index[label] for label in raw]
        gold_rows.append(sorted({column for column, _ in found if column is not None}))
        unscored.append(tuple(sorted({name for column, name in found if column is None})))
    if not texts:
        raise GoldDataError(f"{source} has no rows")
    gold = np.zeros((len(texts), len(names)), dtype=np.float64)
    for row, columns in enumerate(gold_rows):
        gold[row, columns] = 1.0
    return LabelledTexts(source, texts, gold, tuple(names), grouping, tuple(unscored))


# -- readers -------------------------------------------------------------------------------
def _tsv_rows(path: Path) -> Iterable[tuple[str, Any, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)):
            if not fields:
                continue
            if len(fields) < 2:
                raise GoldDataError(f"{path} line {number + 1}: expected text<TAB>label ids")
            yield fields[0], fields[1], f"line {number + 1}"


def _table_rows(records: list[dict[str, Any]], path: Path) -> Iterable[tuple[str, Any, str]]:
    for number, record in enumerate(records):
        missing = [column for column in ("text", "labels") if column not in record]
        if missing:
            raise GoldDataError(f"{path} row {number + 1}: no {' or '.join(missing)} column")
        yield record["text"], record["labels"], f"row {number + 1}"


def _read_records(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    if suffix == ".jsonl":
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise GoldDataError(f"{path} line {number + 1}: not JSON: {error}") from error
        return records
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        reason = first_line(error)
        raise GoldDataError(f"{path} is not a readable Parquet file ({reason})") from error
    missing = [column for column in ("text", "labels") if column not in table.column_names]
    if missing:
        raise GoldDataError(f"{path}: no {' or '.join(missing)} column")
    records_: list[dict[str, Any]] = table.select(["text", "labels"]).to_pylist()
    return records_


def read_file(path: Path, grouping: Grouping | None = None) -> LabelledTexts:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise GoldDataError(f"{path}: expected one of {', '.join(SUFFIXES)}")
    try:
        rows = _tsv_rows(path) if suffix == ".tsv" else _table_rows(_read_records(path), path)
        return labelled_texts(str(path), rows, grouping)
    except UnicodeDecodeError as error:
        raise GoldDataError(f"{path} is not UTF-8 text: {error}") from error


DatasetLoader = Callable[..., Any]


def read_goemotions(
    split: str, grouping: Grouping | None = None, loader: DatasetLoader | None = None
) -> LabelledTexts:
    """GoEmotions' "simplified" split from the Hub (or the local Hugging Face cache)."""
    if split not in GOEMOTIONS_SPLITS:
        raise GoldDataError(f"goemotions has no split {split!r}: one of {GOEMOTIONS_SPLITS}")
    if loader is None:
        try:
            from datasets import load_dataset
        except ImportError as error:
            raise GoldDataError(
                "reading GoEmotions from the Hub needs `datasets`: pip install "
                "'emopillars[train]' (or pass a local GoEmotions TSV file)"
            ) from error
        loader = load_dataset
    source = f"goemotions:{split}"
    try:
        data = loader(GOEMOTIONS_REPO, "simplified", split=split)
    except Exception as error:  # datasets raises many types for "the Hub is unreachable"
        raise GoldDataError(
            f"cannot load {GOEMOTIONS_REPO} ({split}) from the Hugging Face Hub: "
            f"{type(error).__name__}: {error}; offline, pass a local copy instead (a GoEmotions "
            "TSV file: text, label ids, id)"
        ) from error
    rows = ((row["text"], row["labels"], f"row {n + 1}") for n, row in enumerate(data))
    return labelled_texts(source, rows, grouping)


def read_target(
    target: str, label_map: Path | None = None, loader: DatasetLoader | None = None
) -> LabelledTexts:
    """`goemotions[:split]` or a local file, optionally regrouped by a label mapping."""
    grouping = load_grouping(label_map) if label_map is not None else None
    name, _, split = target.partition(":")
    if name == "goemotions":
        return read_goemotions(split or "test", grouping, loader)
    path = Path(target)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise GoldDataError(
            f"{target}: {what}; a target is goemotions[:split], synthetic:RUN_DIR "
            f"(evaluate only) or a {', '.join(SUFFIXES)} file"
        )
    return read_file(path, grouping)
