"""A run's dataset as classifier examples: the input texts and a target row per example.

Context-less examples are the utterance alone. Context-aware examples are a text pair, as the
paper's context-aware classifiers read them: the speaker (name and description) with the
context first, then the (rewritten) utterance, so that truncation cuts the context, never the
utterance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from emopillars.classify.metrics import Matrix
from emopillars.dataset.dataset_manifest import verify_dataset
from emopillars.hashing import file_hash
from emopillars.run.layout import RunLayout
from emopillars.run.plan import read_plan
from emopillars.run.storage import CorruptFileError, read_frame
from emopillars.stages.taxonomy import LABELS

ConfigName = Literal["context_less", "context_aware"]
Targets = Literal["labels", "soft"]
CONFIG_NAMES: tuple[ConfigName, ...] = ("context_less", "context_aware")


class DatasetMissingError(FileNotFoundError):
    """The folder is no run folder, or has no assembled dataset (or not this config's split)."""


class DatasetChangedError(RuntimeError):
    """The dataset's files are not those its assembly wrote (dataset/manifest.json): a model
    trained or scored on them would not be what its card and figures say."""


@dataclass(frozen=True)
class Examples:
    texts: list[str]  # the utterance, or for context-aware the speaker and context
    pairs: list[str] | None  # the utterance of a context-aware example
    targets: Matrix  # (examples, 28): 0/1 kept labels, or the soft intensities
    ids: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def require_assembled(run_dir: Path, configs: Sequence[ConfigName]) -> None:
    """These configs of the run's dataset are as assembly wrote them; else
    DatasetMissingError or DatasetChangedError, saying what to do."""
    layout = RunLayout(run_dir)
    if not layout.plan.is_file():
        raise DatasetMissingError(
            f"{run_dir} is not an emopillars run folder (no {layout.plan.name}): name the "
            "--output folder of an `emopillars run`"
        )
    if not layout.dataset.is_dir():
        raise DatasetMissingError(
            f"{run_dir} has no assembled dataset yet: finish the run (the same `emopillars "
            f"run` command again), or `emopillars assemble {run_dir}`"
        )
    manifest = layout.relative(layout.dataset_manifest)
    folders = tuple(f"{layout.relative(layout.dataset / config)}/" for config in configs)
    changed = [
        problem
        for problem in verify_dataset(layout, read_plan(layout)["shards"])
        if problem.path == manifest or problem.path.startswith(folders)
    ]
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise DatasetChangedError(
            f"{changed[0]}{more}: `emopillars assemble {run_dir}` builds the dataset again"
        )


def split_files(run_dir: Path, config: ConfigName, split: str) -> list[Path]:
    folder = run_dir / "dataset" / config
    files = sorted(folder.glob(f"{split}-*.parquet"))
    if not files:
        raise DatasetMissingError(
            f"no {split} split of {config} in {folder}: assembly leaves out a split with no "
            "rows; generate from more stories"
        )
    return files


def dataset_fingerprint(run_dir: Path, config: ConfigName) -> dict[str, str]:
    """sha256 of each file of the config: what a model was trained on."""
    folder = run_dir / "dataset" / config
    return {path.name: file_hash(path) for path in sorted(folder.glob("*.parquet"))}


def context_first_segment(actor: str, description: str, context: str) -> str:
    return f"{actor} ({description}): {context}" if description else f"{actor}: {context}"


def read_examples(
    run_dir: Path,
    config: ConfigName,
    split: str,
    targets: Targets = "labels",
    utterance_column: str = "utterance",
) -> Examples:
    """One example per dataset row, in the dataset's order. `utterance_column` picks the
    context-aware rows' `original_utterance` instead of the rewritten one."""
    needed = {"id", utterance_column, "labels", "scores"}
    if config == "context_aware":
        needed |= {"actor", "actor_description", "context"}
    frames = []
    for path in split_files(run_dir, config, split):
        frame = read_frame(path)
        missing = sorted(needed - set(frame.columns))
        if missing:
            raise CorruptFileError(
                path,
                f"it has no column {', '.join(map(repr, missing))}",
                f"run `emopillars assemble {run_dir}` to build the dataset again",
            )
        frames.append(frame)
    frame = pl.concat(frames)
    utterances = frame[utterance_column].to_list()
    if config == "context_aware":
        texts = [
            context_first_segment(actor, description, context)
            for actor, description, context in zip(
                frame["actor"].to_list(),
                frame["actor_description"].to_list(),
                frame["context"].to_list(),
                strict=True,
            )
        ]
        pairs: list[str] | None = utterances
    else:
        texts, pairs = utterances, None
    matrix = np.zeros((frame.height, len(LABELS)), dtype=np.float64)
    for row, (labels, scores) in enumerate(
        zip(frame["labels"].to_list(), frame["scores"].to_list(), strict=True)
    ):
        matrix[row, labels] = scores if targets == "soft" else 1.0
    return Examples(texts=texts, pairs=pairs, targets=matrix, ids=frame["id"].to_list())
