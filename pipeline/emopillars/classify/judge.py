"""Judge the teacher before spending GPU-hours: its labelling call on human-labelled sentences,
scored against their gold labels at every intensity threshold.

A judge folder is a small run folder (RunLayout): the gold texts as sentence shards, then one
stage, `judge`, run shard by shard by the pipeline's Runner. Requests therefore go through the
same engine seam, batches, journal, kept answers, rejects and markers as a run's, and a killed
judge resumes without asking the engine anything twice. The figures are written last, to
DIR/judge.json, and computed again from the shards on every invocation (so a new label
mapping needs no requests). Like a run, a judge holds its folder's lock (run/lock.py) while it
writes: a second judge of the same folder (the default folder is named by target and engine, so
the same command twice is one folder) stops at once, naming the first.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emopillars.classify.gold import GoldDataError, LabelledTexts
from emopillars.classify.judge_scores import figures, teacher_scores
from emopillars.classify.judge_stage import JUDGE_STEP, SENTENCE, SENTENCES, STAGE
from emopillars.classify.metrics import Matrix
from emopillars.config import RunConfig
from emopillars.engines import EngineSpec
from emopillars.hashing import stable_hash
from emopillars.run import lock
from emopillars.run.corpus import SPECIAL_TOKENS
from emopillars.run.layout import RunLayout
from emopillars.run.runner import ProgressHook, Runner
from emopillars.run.storage import CorruptFileError, read_rows, write_json, write_parquet
from emopillars.stages import STEPS
from emopillars.stages.taxonomy import LABEL_IDS, LABELS

SENTENCES_PER_SHARD = 100  # the unit of markers; the journal keeps what a shard has so far
JUDGE_FILE = "judge.json"


@dataclass(frozen=True)
class JudgeResult:
    judge_dir: Path
    figures: dict[str, Any]  # judge.json's object
    # This invocation only.
    shards_computed: int
    shards_skipped: int
    requests_sent: int
    engine_seconds: float


def default_judge_dir(target: str, spec: EngineSpec, root: Path = Path("outputs")) -> Path:
    """outputs/judge-<target>-<hash of the target and the engine>: one folder per teacher and
    gold set, so judging another model never mixes its answers in."""
    path = Path(target)
    name, where = (path.stem, str(path.resolve())) if path.is_file() else (target, target)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "gold"
    digest = stable_hash({"target": where, "engine": spec.info.fingerprint}, length=8)
    return root / f"judge-{slug}-{digest}"


def prompt_texts(gold: LabelledTexts) -> list[str]:
    """The gold texts as the prompt holds them: whitespace runs as one space. Chat-template
    markup would steer the model rather than be judged, so it stops the judge."""
    texts = [" ".join(text.split()) for text in gold.texts]
    for number, text in enumerate(texts, start=1):
        markup = SPECIAL_TOKENS.findall(text)
        if markup:
            raise GoldDataError(
                f"{gold.source} text {number} holds chat-template markup "
                f"({', '.join(sorted(set(markup)))}): remove it from the gold set"
            )
    return texts


def write_sentences(layout: RunLayout, texts: list[str], shard_size: int) -> list[Path]:
    """The sentence shards, rewritten only where they differ from what is there: an identical
    shard keeps its file, and so its judge shard's marker stays current."""
    paths: list[Path] = []
    for shard, start in enumerate(range(0, len(texts), shard_size)):
        rows = [
            {"sentence_id": f"{index:06d}", "text": texts[index]}
            for index in range(start, min(start + shard_size, len(texts)))
        ]
        path = layout.shard(SENTENCES, shard)
        if not _holds(path, rows):
            write_parquet(path, rows, SENTENCE)
        paths.append(path)
    return paths


def _holds(path: Path, rows: list[dict[str, Any]]) -> bool:
    if not path.exists():
        return False
    try:
        return read_rows(path) == rows
    except CorruptFileError:  # a torn file from a kill: written again
        return False


def judge_teacher(
    config: RunConfig,
    gold: LabelledTexts,
    spec: EngineSpec | None = None,
    on_shard: ProgressHook | None = None,
    shard_size: int = SENTENCES_PER_SHARD,
    label_map: Path | None = None,
) -> JudgeResult:
    """Label every gold sentence with the teacher (resuming in config.output_dir), score it,
    and write DIR/judge.json. `spec` replaces the configured engine (tests pass a fake).
    RunFolderBusy, before anything is written, when another process writes the folder."""
    with lock.exclusive(config.output_dir, "emopillars judge-teacher", sweep=True, create=True):
        return _judge(config, gold, spec, on_shard, shard_size, label_map)


def _judge(
    config: RunConfig,
    gold: LabelledTexts,
    spec: EngineSpec | None,
    on_shard: ProgressHook | None,
    shard_size: int,
    label_map: Path | None,
) -> JudgeResult:
    texts = prompt_texts(gold)
    runner = Runner(config, spec, on_shard, steps=(*STEPS, JUDGE_STEP))
    layout = runner.layout
    paths = write_sentences(layout, texts, shard_size)
    try:
        for shard, path in enumerate(paths):
            runner.run_stage_shard(STAGE, shard, path)
    finally:
        runner.engine.close()
    intensities, labelled = _teacher_intensities(layout, len(paths), len(texts))
    reasons, unmapped = _rejects(layout, len(paths))
    info = runner.spec.info
    result = {
        **figures(teacher_scores(gold, intensities), gold),
        "rejected": len(texts) - labelled,
        "reject_reasons": reasons,
        "unmapped_labels": unmapped,
        **gold.coverage(),
        "target": gold.source,
        "label_map": None if label_map is None else str(label_map),
        "engine": info.name,
        "model": info.model,
        "revision": info.revision,
        "prompt_version": config.prompt_version,
        "prompt_sha256": runner.ctx.template(JUDGE_STEP.call).sha256,
    }
    write_json(layout.root / JUDGE_FILE, result)
    return JudgeResult(
        judge_dir=layout.root,
        figures=result,
        shards_computed=len(runner.computed),
        shards_skipped=runner.skipped,
        requests_sent=sum(marker.requests_sent for marker in runner.computed),
        engine_seconds=round(sum(marker.engine_seconds for marker in runner.computed), 3),
    )


def _teacher_intensities(layout: RunLayout, shards: int, sentences: int) -> tuple[Matrix, int]:
    """(sentences, 28) intensities of the teacher's labels, and how many sentences it labelled;
    a rejected sentence's row stays zero: it predicts nothing, and its gold labels count."""
    intensities = np.zeros((sentences, len(LABELS)), dtype=np.float64)
    labelled = 0
    for shard in range(shards):
        for row in read_rows(layout.shard(STAGE.name, shard)):
            index = int(row["sentence_id"])
            labelled += 1
            for label, score in zip(row["labels"], row["scores"], strict=True):
                intensities[index, LABEL_IDS[label]] = score
    return intensities, labelled


def _rejects(layout: RunLayout, shards: int) -> tuple[dict[str, int], int]:
    """Why sentences were rejected (reason -> count), and how many labels were unmapped."""
    rows = [row for shard in range(shards) for row in read_rows(layout.rejects(STAGE.name, shard))]
    reasons = Counter(row["reason"] for row in rows if row["scope"] == "request")
    unmapped = sum(1 for row in rows if row["reason"] == "unmapped_label")
    return dict(sorted(reasons.items())), unmapped
