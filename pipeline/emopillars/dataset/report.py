"""The quality report of a run folder: measured from the assembled dataset's files (and kept as
dataset/quality.json), or from the finished stage shards of a run that is not done yet.

quality.json records the sha256 of every data file it measured: a dataset whose files no
longer match is stale, and `publish` refuses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import ValidationError

from emopillars.dataset.assemble import (
    CONFIGS,
    CONTEXT_AWARE,
    CONTEXT_LESS,
    SPLITS,
    DatasetConfig,
    dataset_frame,
)
from emopillars.dataset.dataset_manifest import DATASET, verify_dataset
from emopillars.dataset.quality import (
    PAPER,
    ConfigsQuality,
    Examples,
    QualityReport,
    StageYield,
    measure_context_aware,
    measure_context_less,
)
from emopillars.dataset.similarity import EmbeddingVectorizer, LexicalVectorizer, Vectorizer
from emopillars.hashing import file_hash
from emopillars.resources import prompts_dir
from emopillars.run.integrity import repair_hint, verify_chain
from emopillars.run.layout import STORIES, RunLayout
from emopillars.run.manifest import Manifest
from emopillars.run.plan import read_plan
from emopillars.run.record import RunRecord, read_run_record
from emopillars.run.status import stage_totals
from emopillars.run.storage import read_frame, row_count
from emopillars.stages import STAGE_NAMES
from emopillars.stages.lexicon import EmotionLexicon, load_lexicon

QUALITY_FILE = "quality.json"
NO_LEXICON = "emotion word shares: the run's prompt folder has no emotion_words.json"


def default_vectorizer() -> Vectorizer:
    """Sentence embeddings when the `quality` extra is installed, else TF-IDF of words."""
    try:
        from emopillars.dataset.embeddings import sentence_embedder
    except ImportError:  # a checkout without the embeddings module
        return LexicalVectorizer()
    embedder = sentence_embedder()
    return LexicalVectorizer() if embedder is None else EmbeddingVectorizer(embedder)


def run_lexicon(run: RunRecord) -> EmotionLexicon | None:
    """The emotion words of the prompts the run used; None when that folder has none."""
    folder = Path(run.config.get("prompts_dir") or prompts_dir()) / run.prompt_version
    try:
        return load_lexicon(folder)
    except FileNotFoundError:
        return None


def data_files(dataset_dir: Path, config: DatasetConfig) -> list[Path]:
    return sorted((dataset_dir / config.name).glob("*.parquet"))


def measure_dataset(
    run_dir: Path, dataset_dir: Path, vectorize: Vectorizer | None = None
) -> QualityReport:
    """The report of the data files in `dataset_dir` (the run's dataset, or its staging
    folder during assembly); `figures` is left empty for the caller that draws them."""
    layout = RunLayout(run_dir)
    plan = read_plan(layout)
    frames: dict[str, pl.DataFrame | None] = {}
    files: dict[str, str] = {}
    for config in CONFIGS:
        paths = data_files(dataset_dir, config)
        files.update({path.relative_to(dataset_dir).as_posix(): file_hash(path) for path in paths})
        frames[config.name] = (
            pl.concat(
                [
                    read_frame(path).with_columns(split=pl.lit(path.name.split("-")[0]))
                    for path in paths
                ]
            )
            if paths
            else None
        )
    stories = dict.fromkeys(frames, plan["stories"])
    return _report(run_dir, frames, stories, vectorize, files=files, missing=[], source="dataset")


def measure_stage_shards(run_dir: Path, vectorize: Vectorizer | None = None) -> QualityReport:
    """The report of what a run has finished so far, read from its stage shards; `missing`
    names the shards not done, those whose files no longer match their markers (left out,
    not measured), and what is measured only at assembly."""
    layout = RunLayout(run_dir)
    plan = read_plan(layout)
    run = read_run_record(layout)
    manifest = Manifest(layout)
    chain = verify_chain(layout, plan)
    broken = {(problem.stage, problem.shard) for problem in chain.problems}
    frames: dict[str, pl.DataFrame | None] = {}
    stories: dict[str, int] = {}
    for config in CONFIGS:
        # A shard is measured when its source stage is done and every file that led to it
        # is what its marker recorded.
        upstream = (STORIES, *STAGE_NAMES[: STAGE_NAMES.index(config.source_stage) + 1])
        done = [
            shard
            for shard in range(plan["shards"])
            if manifest.read(config.source_stage, shard)
            and not any((stage, shard) in broken for stage in upstream)
        ]
        frames[config.name] = (
            dataset_frame(run_dir, config, plan["story_ids"], run.seed, done).rename(
                {"_split": "split"}
            )
            if done
            else None
        )
        stories[config.name] = sum(row_count(layout.story_shard(shard)) for shard in done)
    missing = _missing_shards(run_dir, plan["shards"])
    missing += [f"{problem}: not measured" for problem in chain.problems]
    if chain.problems:
        missing.append(
            f"to rebuild them: {repair_hint(chain.problems, plan.get('num_workers', 1))}"
        )
    missing.append("figures and quality.json: written when the dataset is assembled")
    return _report(
        run_dir, frames, stories, vectorize, files={}, missing=missing, source="stage shards"
    )


def _missing_shards(run_dir: Path, shards: int) -> list[str]:
    manifest = Manifest(RunLayout(run_dir))
    missing = []
    for stage in STAGE_NAMES:
        open_shards = [s for s in range(shards) if manifest.read(stage, s) is None]
        if open_shards:
            listed = ", ".join(str(s) for s in open_shards[:10])
            more = f" and {len(open_shards) - 10} more" if len(open_shards) > 10 else ""
            missing.append(
                f"{stage}: {len(open_shards)} of {shards} shards not done ({listed}{more})"
            )
    return missing


def _report(
    run_dir: Path,
    frames: dict[str, pl.DataFrame | None],
    stories: dict[str, int],
    vectorize: Vectorizer | None,
    *,
    files: dict[str, str],
    missing: list[str],
    source: Literal["dataset", "stage shards"],
) -> QualityReport:
    vectorize = vectorize or default_vectorizer()
    lexicon = run_lexicon(read_run_record(RunLayout(run_dir)))
    missing = [*missing, *([] if lexicon else [NO_LEXICON])]
    missing += [f"{name}: no rows yet" for name, frame in frames.items() if frame is None]
    less, aware = frames[CONTEXT_LESS.name], frames[CONTEXT_AWARE.name]
    configs = ConfigsQuality(
        context_less=None
        if less is None
        else measure_context_less(_examples(less), stories[CONTEXT_LESS.name], SPLITS, vectorize),
        context_aware=None
        if aware is None
        else measure_context_aware(
            _examples(aware), stories[CONTEXT_AWARE.name], SPLITS, vectorize, lexicon
        ),
    )
    totals = stage_totals(run_dir)
    return QualityReport(
        source=source,
        complete=not missing,
        missing=missing,
        paper=PAPER,
        configs=configs,
        stages={
            stage: StageYield(
                inputs=total.inputs,
                accepted=total.accepted,
                rejected=total.rejected,
                item_rejects=total.item_rejects,
                outputs=total.outputs,
                reject_reasons=total.reject_reasons,
            )
            for stage, total in totals.items()
        },
        files=files,
        figures=[],
    )


def _examples(frame: pl.DataFrame) -> Examples:
    return Examples.from_columns(frame.to_dict(as_series=False))


def write_quality(folder: Path, report: QualityReport) -> None:
    (folder / QUALITY_FILE).write_text(report.to_json(), encoding="utf-8")


def read_quality(dataset_dir: Path) -> QualityReport | None:
    """The stored report; None when there is none or it is of another format."""
    path = dataset_dir / QUALITY_FILE
    if not path.is_file():
        return None
    try:
        return QualityReport.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError:
        return None


def stale_parts(report: QualityReport, dataset_dir: Path) -> list[str]:
    """What no longer matches the stored report: data files added, removed or changed since
    it measured them, and figures it lists that are gone."""
    now = {
        path.relative_to(dataset_dir).as_posix(): path
        for config in CONFIGS
        for path in data_files(dataset_dir, config)
    }
    changed = sorted(
        name
        for name in set(now) | set(report.files)
        if name not in now or name not in report.files or file_hash(now[name]) != report.files[name]
    )
    parts = [f"{name} changed since quality.json measured it" for name in changed]
    parts += [
        f"figure {name} is missing" for name in report.figures if not (dataset_dir / name).is_file()
    ]
    return parts


def quality_of_run(run_dir: Path, vectorize: Vectorizer | None = None) -> QualityReport:
    """The stored report of an assembled run when it is current; else one measured now: from
    the dataset when every shard is done and the dataset is as assembled, else from the
    finished stage shards (naming what differs from the assembled dataset)."""
    layout = RunLayout(run_dir)
    plan = read_plan(layout)  # FileNotFoundError when this is no run folder
    manifest = Manifest(layout)
    done = all(
        manifest.read(stage, shard) is not None
        for stage in STAGE_NAMES
        for shard in range(plan["shards"])
    )
    if not (done and layout.dataset.is_dir()):
        return measure_stage_shards(run_dir, vectorize)
    # The data files, or the markers they were built from; the report and figures beside them
    # are checked below.
    data = tuple(f"{layout.relative(layout.dataset / config.name)}/" for config in CONFIGS)
    changed = [
        problem
        for problem in verify_dataset(layout, plan["shards"])
        if problem.stage != DATASET or problem.path.startswith(data)
    ]
    if changed:
        # The dataset is not what assembly made: measure what it would be made from.
        report = measure_stage_shards(run_dir, vectorize)
        notes = [f"{problem}: the dataset is not measured" for problem in changed]
        notes.append(f"`emopillars assemble {run_dir}` builds the dataset again")
        return report.model_copy(update={"missing": [*notes, *report.missing]})
    stored = read_quality(layout.dataset)
    if stored is not None and not stale_parts(stored, layout.dataset):
        return stored
    report = measure_dataset(run_dir, layout.dataset, vectorize)
    note = (
        f"dataset/{QUALITY_FILE} and the figures: absent or stale; "
        f"`emopillars assemble {run_dir}` writes them again"
    )
    return report.model_copy(update={"missing": [*report.missing, note], "complete": False})
