"""Corpus ingest: load and check the corpus, settle the plan, and write the story shards that
the first stage reads."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from emopillars.config import RunConfig
from emopillars.resources import sample_corpus
from emopillars.run import tables
from emopillars.run.corpus import fields_from, load_corpus
from emopillars.run.layout import RunLayout
from emopillars.run.plan import settle_plan
from emopillars.run.storage import CorruptFileError, read_rows, write_parquet
from emopillars.stages.base import STORY, Row

log = logging.getLogger("emopillars")


def prepare_stories(config: RunConfig, layout: RunLayout, run_fingerprint: str) -> dict[str, Any]:
    """Load and check the corpus, settle the plan, and write the corpus as story shards
    (rewritten only on change).

    The plan is settled first: a worker whose corpus or config differs from the one its
    fellow workers planned with stops before it writes any story shard."""
    corpus = config.corpus or sample_corpus()
    stories, rejects = load_corpus(
        corpus, config.corpus_format, fields_from(config), config.max_story_chars
    )
    if config.max_stories is not None:
        stories = stories[: config.max_stories]
    shards = max(1, -(-len(stories) // config.shard_size))
    plan = {
        "shards": shards,
        "stories": len(stories),
        "corpus": str(corpus),
        "corpus_rejects": dict(Counter(reject.reason for reject in rejects)),
        "story_ids": [story.story_id for story in stories],
        "num_workers": config.execution.num_workers,
        "run_fingerprint": run_fingerprint,
    }
    settle_plan(layout.plan, plan, shared=config.execution.num_workers > 1)
    # Workers of one run write identical story shards: whoever comes second keeps the file.
    for shard in range(shards):
        chunk = stories[shard * config.shard_size : (shard + 1) * config.shard_size]
        rows = [story.__dict__ for story in chunk]
        _write_if_changed(layout.story_shard(shard), rows, STORY)
    reject_rows = [reject.__dict__ for reject in rejects]
    _write_if_changed(layout.corpus_rejects, reject_rows, tables.CORPUS_REJECT)
    return plan


def _write_if_changed(path: Path, rows: list[Row], schema: Any) -> None:
    # Rewriting an unchanged shard would still be correct, but keeping the file keeps
    # everyone's view of it stable (and is cheaper), and leaves a finished run folder
    # untouched. A shard that a crash or an edit damaged is rebuilt from the corpus.
    if path.exists():
        try:
            if read_rows(path) == rows:
                return
        except CorruptFileError as error:
            log.warning("%s is unreadable (%s): rebuilding it from the corpus", path, error.problem)
    write_parquet(path, rows, schema)
