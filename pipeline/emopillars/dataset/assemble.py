"""Final assembly: the two dataset configs, split by story, as Parquet with a dataset card.

The dataset is a function of the stage shards and the seed alone (rows sorted by id, no
timestamps), so a resumed run and an uninterrupted one give identical files.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from emopillars.dataset.card import render_card
from emopillars.dataset.dataset_manifest import write_dataset_manifest
from emopillars.dataset.quality import QualityReport
from emopillars.hashing import stable_hash
from emopillars.run.integrity import BrokenChainError, verify_chain
from emopillars.run.layout import RunLayout
from emopillars.run.manifest import Manifest
from emopillars.run.plan import describe_missing
from emopillars.run.record import read_run_record
from emopillars.run.storage import read_frame, write_table
from emopillars.stages import STAGE_NAMES
from emopillars.stages.taxonomy import LABEL_IDS, LABELS

SPLITS = ("train", "validation", "test")
ROWS_PER_FILE = 50_000


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    source_stage: str
    fractions: tuple[float, float, float]
    columns: dict[str, str]  # output column -> stage column
    schema: pa.Schema


def _schema(names: list[str]) -> pa.Schema:
    kinds = {"labels": pa.list_(pa.int64()), "scores": pa.list_(pa.float64())}
    return pa.schema([(name, kinds.get(name, pa.string())) for name in names])


_COMMON = {
    "id": "utterance_id",
    "story_id": "story_id",
    "actor_id": "actor_id",
    "actor": "actor",
    "actor_description": "actor_description",
}
CONTEXT_LESS = DatasetConfig(
    name="context_less",
    source_stage="labels",
    fractions=(0.8, 0.1, 0.1),
    columns={
        **_COMMON,
        "utterance": "utterance",
        "intended_emotion": "intended_emotion",
        "labels": "labels",
        "scores": "scores",
    },
    schema=_schema([*_COMMON, "utterance", "intended_emotion", "labels", "scores"]),
)
CONTEXT_AWARE = DatasetConfig(
    name="context_aware",
    source_stage="rewrites",
    fractions=(0.9, 0.05, 0.05),
    columns={
        **_COMMON,
        "context": "context",
        "utterance": "rewritten_utterance",
        "original_utterance": "utterance",
        "intended_emotion": "intended_emotion",
        "labels": "labels",
        "scores": "scores",
    },
    schema=_schema(
        [
            *_COMMON,
            "context",
            "utterance",
            "original_utterance",
            "intended_emotion",
            "labels",
            "scores",
        ]
    ),
)
CONFIGS = (CONTEXT_LESS, CONTEXT_AWARE)


class IncompleteRunError(RuntimeError):
    """Some (stage, shard) has no marker yet; the message names each and its worker."""

    def __init__(self, missing: list[tuple[str, int]], total: int, num_workers: int) -> None:
        self.missing = missing
        super().__init__(
            f"cannot assemble: {len(missing)} of {total} stage shards are not done:\n"
            + describe_missing(missing, num_workers)
        )


def split_of_stories(
    story_ids: list[str], seed: int, fractions: tuple[float, ...]
) -> dict[str, str]:
    """Rank stories by a seeded hash and cut the ranking by the split fractions.

    The same ranking serves every config, so with 80/10/10 and 90/5/5 the context-aware test
    stories are a subset of the context-less test stories. From three stories on, every split
    gets at least one; fewer stories all go to train.
    """
    ranked = sorted(story_ids, key=lambda story: (stable_hash([seed, story]), story))
    total = len(ranked)
    sizes = [0] * len(fractions)
    if total >= len(fractions):
        sizes[1:] = [max(1, round(fraction * total)) for fraction in fractions[1:]]
    sizes[0] = total - sum(sizes[1:])
    assignment: dict[str, str] = {}
    start = 0
    for split, size in zip(SPLITS, sizes, strict=True):
        for story in ranked[start : start + size]:
            assignment[story] = split
        start += size
    return assignment


def _features(config: DatasetConfig) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for field in config.schema:
        if field.name == "labels":
            class_label = {"names": list(LABELS), "_type": "ClassLabel"}
            features[field.name] = {"feature": class_label, "_type": "List"}
        elif field.name == "scores":
            features[field.name] = {
                "feature": {"dtype": "float64", "_type": "Value"},
                "_type": "List",
            }
        else:
            features[field.name] = {"dtype": "string", "_type": "Value"}
    return features


def _table(config: DatasetConfig, frame: pl.DataFrame) -> pa.Table:
    table = frame.to_arrow().select(list(config.schema.names)).cast(config.schema)
    # The `huggingface` schema metadata lets `datasets` restore ClassLabel names.
    metadata = {b"huggingface": json.dumps({"info": {"features": _features(config)}}).encode()}
    return table.replace_schema_metadata(metadata)


def dataset_frame(
    run_dir: Path, config: DatasetConfig, story_ids: list[str], seed: int, shards: Iterable[int]
) -> pl.DataFrame:
    """The rows of `config` from these shards of its source stage, as the dataset holds them
    (labels as class ids, sorted by id), with the split of each row in `_split`."""
    layout = RunLayout(run_dir)
    frames = [read_frame(layout.shard(config.source_stage, shard)) for shard in shards]
    assignment = split_of_stories(story_ids, seed, config.fractions)
    return (
        pl.concat(frames, how="vertical")
        .select([pl.col(source).alias(target) for target, source in config.columns.items()])
        .with_columns(
            pl.col("labels").list.eval(
                pl.element().replace_strict(LABEL_IDS, return_dtype=pl.Int64)
            ),
            pl.col("story_id").replace_strict(assignment, return_dtype=pl.String).alias("_split"),
        )
        .sort("id")
    )


def assemble(
    run_dir: Path, plan: dict[str, Any], seed: int, license_id: str | None
) -> dict[str, dict[str, int]]:
    layout = RunLayout(run_dir)
    manifest = Manifest(layout)
    totals = manifest.totals(STAGE_NAMES, plan["shards"])
    # Verified before anything is written: a dataset is built only from files that are
    # exactly what their markers recorded, linked from the story shards to the last stage.
    chain = verify_chain(layout, plan)
    if chain.problems:
        raise BrokenChainError(
            f"cannot assemble {run_dir}", chain.problems, plan.get("num_workers", 1)
        )
    if chain.missing:
        raise IncompleteRunError(list(chain.missing), chain.total, plan.get("num_workers", 1))

    staging = layout.dataset_staging
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    counts: dict[str, dict[str, int]] = {}
    label_counts: dict[str, Counter[str]] = {}
    for config in CONFIGS:
        frame = dataset_frame(run_dir, config, plan["story_ids"], seed, range(plan["shards"]))
        counts[config.name] = {}
        label_counts[config.name] = Counter(
            LABELS[i] for labels in frame["labels"].to_list() for i in labels
        )
        for split in SPLITS:
            part = frame.filter(pl.col("_split") == split)
            counts[config.name][split] = part.height
            # An empty split gets no file and no card entry: `datasets` cannot read a
            # Parquet file without rows, and an absent split says the same thing.
            if part.height:
                _write_split(staging / config.name, split, _table(config, part))

    quality = _measure_quality(run_dir, staging)
    card = render_card(
        counts=counts,
        label_counts=label_counts,
        totals=totals,
        run=read_run_record(RunLayout(run_dir)),
        license_id=license_id,
        features={config.name: _features(config) for config in CONFIGS},
        quality=quality,
    )
    (staging / "README.md").write_text(card, encoding="utf-8")
    write_dataset_manifest(layout, staging, plan["shards"])
    final = layout.dataset
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return counts


def _measure_quality(run_dir: Path, staging: Path) -> QualityReport:
    """quality.json and the figures, from the data files just written to `staging`."""
    # Imported here: the report reads the configs this module defines, and draws with
    # matplotlib, which `status` and the workers need not load.
    from emopillars.dataset.figures import write_figures
    from emopillars.dataset.report import measure_dataset, write_quality

    quality = measure_dataset(run_dir, staging)
    quality = quality.model_copy(update={"figures": write_figures(quality, staging)})
    write_quality(staging, quality)
    return quality


def _write_split(folder: Path, split: str, table: pa.Table) -> None:
    files = max(1, -(-table.num_rows // ROWS_PER_FILE))
    for index in range(files):
        chunk = table.slice(index * ROWS_PER_FILE, ROWS_PER_FILE)
        write_table(folder / f"{split}-{index:05d}-of-{files:05d}.parquet", chunk)
