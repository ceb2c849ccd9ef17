"""What a run folder must satisfy before anything of it is published, and what the checks find.

Everything here is local: a run that fails a check never reaches the Hub. Every problem is
named (stage and shard, config and split, file, id), so that the message says what to fix.
The summary the checks return is read from the files that will be uploaded, so the card
rendered from it describes exactly that data.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from emopillars.dataset.assemble import CONFIGS, SPLITS, DatasetConfig
from emopillars.dataset.dataset_manifest import verify_dataset
from emopillars.dataset.quality import QualityReport
from emopillars.dataset.report import QUALITY_FILE, read_quality, stale_parts
from emopillars.messages import first_line
from emopillars.run.integrity import repair_hint, verify_chain
from emopillars.run.layout import RunLayout
from emopillars.run.manifest import Manifest, StageTotals
from emopillars.run.plan import read_plan
from emopillars.run.record import RunRecord, read_run_record
from emopillars.stages import STAGE_NAMES
from emopillars.stages.taxonomy import LABELS

# The Hub's dataset viewer reads Parquet by row group: bigger groups time out on text data.
VIEWER_MAX_ROW_GROUP_ROWS = 50_000
DATA_FILE = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
# Long lists of problems (a million duplicate ids) are cut: the first ones say enough.
MAX_NAMED = 5


class ReleaseCheckError(RuntimeError):
    """The run folder is not fit to publish; `problems` lists every failed check."""

    def __init__(self, run_dir: Path, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{run_dir} cannot be published:\n{listing}")


@dataclass(frozen=True)
class DataFile:
    path_in_repo: str  # e.g. context_less/train-00000-of-00001.parquet
    local: Path
    rows: int


@dataclass(frozen=True)
class ReleaseSummary:
    run_dir: Path
    dataset_dir: Path
    plan: dict[str, Any]
    run: RunRecord
    totals: dict[str, StageTotals]
    files: tuple[DataFile, ...]
    counts: dict[str, dict[str, int]]  # config -> split -> rows
    label_counts: dict[str, Counter[str]]  # config -> label -> rows that carry it
    features: dict[str, dict[str, Any]]  # config -> `datasets` features, as the files declare
    quality: QualityReport  # dataset/quality.json, current: it measured exactly these files


def check_release(run_dir: Path) -> ReleaseSummary:
    """Run every check; raise ReleaseCheckError naming all failures, or return the summary."""
    layout = RunLayout(run_dir)
    plan = read_plan(layout)  # FileNotFoundError when this is no run folder
    run = read_run_record(layout)
    problems = _stage_problems(run_dir, plan)
    dataset_dir = layout.dataset
    if not dataset_dir.is_dir():
        problems.append(f"{dataset_dir} is missing: finish the run to assemble it")
        raise ReleaseCheckError(run_dir, problems)
    # Exactly what was assembled, from the stage shards as they are now.
    again = f"run `emopillars assemble {run_dir}` to build the dataset again"
    problems += [f"{problem}: {again}" for problem in verify_dataset(layout, plan["shards"])]

    files: list[DataFile] = []
    counts: dict[str, dict[str, int]] = {}
    label_counts: dict[str, Counter[str]] = {}
    features: dict[str, dict[str, Any]] = {}
    for config in CONFIGS:
        checked = _check_config(dataset_dir, config)
        problems += checked.problems
        files += checked.files
        counts[config.name] = checked.counts
        label_counts[config.name] = checked.label_counts
        features[config.name] = checked.features
    quality = read_quality(dataset_dir)
    problems += _quality_problems(run_dir, quality)
    if problems or quality is None:
        raise ReleaseCheckError(run_dir, problems)
    return ReleaseSummary(
        run_dir=run_dir,
        dataset_dir=dataset_dir,
        plan=plan,
        run=run,
        totals=Manifest(RunLayout(run_dir)).totals(STAGE_NAMES, plan["shards"]),
        files=tuple(files),
        counts=counts,
        label_counts=label_counts,
        features=features,
        quality=quality,
    )


def _quality_problems(run_dir: Path, quality: QualityReport | None) -> list[str]:
    """The quality report must exist and have measured exactly the files that go up: the card
    shows its numbers and figures."""
    dataset_dir = RunLayout(run_dir).dataset
    again = f"run `emopillars assemble {run_dir}` to measure the dataset and draw the figures"
    if quality is None:
        return [f"{dataset_dir / QUALITY_FILE} is missing or unreadable: {again}"]
    stale = stale_parts(quality, dataset_dir)
    if not stale:
        return []
    named = "; ".join(stale[:MAX_NAMED]) + (
        f" (and {len(stale) - MAX_NAMED} more)" if len(stale) > MAX_NAMED else ""
    )
    return [f"{dataset_dir / QUALITY_FILE} is stale: {named}: {again}"]


def _stage_problems(run_dir: Path, plan: dict[str, Any]) -> list[str]:
    """Every stage shard done, and the integrity chain from the story shards to it intact."""
    chain = verify_chain(RunLayout(run_dir), plan)
    problems = [
        f"stage {stage}/shard-{shard:05d} is not done: run the same command again"
        for stage, shard in chain.missing
    ]
    if chain.problems:
        # A marker vouches for exact files; a file changed since then is unproven.
        hint = repair_hint(chain.problems, plan.get("num_workers", 1))
        problems += [f"{problem}: {hint}" for problem in chain.problems]
    return problems


@dataclass
class _ConfigCheck:
    problems: list[str]
    files: list[DataFile]
    counts: dict[str, int]
    label_counts: Counter[str]
    features: dict[str, Any]


def _check_config(dataset_dir: Path, config: DatasetConfig) -> _ConfigCheck:
    found = _ConfigCheck([], [], dict.fromkeys(SPLITS, 0), Counter(), {})
    folder = dataset_dir / config.name
    if not folder.is_dir():
        found.problems.append(f"config {config.name} is missing ({folder})")
        return found
    by_split = _files_by_split(folder, config.name, found.problems)
    story_split: dict[str, str] = {}
    crossing: set[str] = set()
    ids: Counter[str] = Counter()
    for split in SPLITS:
        paths = by_split.get(split, [])
        if not paths:
            found.problems.append(f"config {config.name} has no {split} split")
        for path in paths:
            name = f"{config.name}/{path.name}"
            try:
                table = _checked_table(path, name, config, found)
            except (pa.ArrowException, OSError) as error:
                # A damaged file (edited, truncated) is a problem to name, not a crash.
                reason = first_line(error)
                found.problems.append(f"{name} is not a readable Parquet file: {reason}")
                continue
            if table is None:
                continue
            found.files.append(DataFile(name, path, table.num_rows))
            found.counts[split] += table.num_rows
            ids.update(table.column("id").to_pylist())
            for story in set(table.column("story_id").to_pylist()):
                if story_split.setdefault(story, split) != split:
                    crossing.add(story)
            for labels in table.column("labels").to_pylist():
                found.label_counts.update(LABELS[i] for i in labels if 0 <= i < len(LABELS))
        if paths and found.counts[split] == 0:
            found.problems.append(f"config {config.name}: the {split} split has no rows")
    duplicates = sorted(identifier for identifier, n in ids.items() if n > 1)
    if duplicates:
        found.problems.append(
            f"config {config.name}: {len(duplicates)} ids occur more than once: "
            f"{duplicates[:MAX_NAMED]}"
        )
    if crossing:
        found.problems.append(
            f"config {config.name}: {len(crossing)} stories are in more than one split: "
            f"{sorted(crossing)[:MAX_NAMED]}"
        )
    return found


def _files_by_split(folder: Path, config: str, problems: list[str]) -> dict[str, list[Path]]:
    by_split: dict[str, list[Path]] = defaultdict(list)
    declared: dict[str, set[int]] = defaultdict(set)
    for path in sorted(folder.iterdir()):
        match = DATA_FILE.match(path.name)
        if match is None or match["split"] not in SPLITS or not path.is_file():
            # The card's globs would not describe it, and nothing else may go up unchecked.
            problems.append(f"config {config}: unexpected file {path.name}")
            continue
        by_split[match["split"]].append(path)
        declared[match["split"]].add(int(match["count"]))
    for split, paths in by_split.items():
        counts = declared[split]
        expected = {f"{split}-{i:05d}-of-{max(counts):05d}.parquet" for i in range(max(counts))}
        if len(counts) > 1 or {path.name for path in paths} != expected:
            problems.append(f"config {config}: the {split} files are not one complete series")
    return by_split


def _checked_table(
    path: Path, name: str, config: DatasetConfig, found: _ConfigCheck
) -> pa.Table | None:
    """The columns the checks read, or None (and a problem) when the file is not as declared."""
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    if not schema.equals(config.schema, check_metadata=False):
        found.problems.append(
            f"{name}: columns {schema.names} ({schema.types}) differ from the expected "
            f"{config.schema.names} ({config.schema.types})"
        )
        return None
    features = _declared_features(schema.metadata)
    labels = features.get("labels", {}).get("feature", {})
    if labels.get("_type") != "ClassLabel" or labels.get("names") != list(LABELS):
        found.problems.append(f"{name}: labels are not declared as the 28 GoEmotions classes")
        return None
    found.features = features
    metadata = parquet.metadata
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        if group.num_rows > VIEWER_MAX_ROW_GROUP_ROWS:
            found.problems.append(
                f"{name}: row group {index} has {group.num_rows} rows; the Hub viewer needs "
                f"at most {VIEWER_MAX_ROW_GROUP_ROWS}"
            )
        if not all(group.column(i).has_offset_index for i in range(group.num_columns)):
            found.problems.append(f"{name}: row group {index} has no page index")
    table = parquet.read(columns=["id", "story_id", "labels"])
    label_ids = (i for labels in table.column("labels").to_pylist() for i in labels)
    if any(not 0 <= i < len(LABELS) for i in label_ids):
        found.problems.append(f"{name}: label ids outside 0-{len(LABELS) - 1}")
    return table


def _declared_features(metadata: dict[bytes, bytes] | None) -> dict[str, Any]:
    # `datasets` reads ClassLabel names from this key; without it labels load as plain ints.
    raw = (metadata or {}).get(b"huggingface")
    if raw is None:
        return {}
    features: dict[str, Any] = json.loads(raw).get("info", {}).get("features", {})
    return features
