"""The openai engine against a real OpenAI-compatible server: llama-cpp-python's, serving the
packaged model on 127.0.0.1; killed in the middle of a shard and restarted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from conformance import check_conformance, conformance_batch, constrained
from conftest import write_corpus
from emopillars.api import run_pipeline
from emopillars.config import RunConfig
from emopillars.engines.openai_server import OpenAIServerEngine, ServerError
from emopillars.run.status import status_json
from emopillars.stages import STAGE_NAMES
from helpers import Interrupted, Recorder, recording_spec
from servers import LlamaServer

pytestmark = pytest.mark.model


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LlamaServer]:
    llama = LlamaServer(tmp_path / "server.log")
    llama.start()
    yield llama
    llama.stop()


def test_real_server_answers_conform_when_the_schema_is_sent_its_way(server: LlamaServer) -> None:
    config = RunConfig.model_validate(
        {"engine": "openai", "model": "smollm2",
         "server": {"base_url": server.base_url, "structured_outputs": "llamacpp"}}
    )  # fmt: skip
    with closing(OpenAIServerEngine("smollm2", config.server)) as engine:
        verdicts = check_conformance(engine, conformance_batch("llama-server", 1.15))
    assert constrained(verdicts)

    # Sent the vLLM way, the schema is ignored by this server: the answers must be flagged
    # (and so become rejects), not pass as data.
    ignoring = OpenAIServerEngine("smollm2", config.server.model_copy(
        update={"structured_outputs": "vllm"}))  # fmt: skip
    with closing(ignoring):
        verdicts = check_conformance(ignoring, conformance_batch("llama-server", 1.15))
    assert verdicts.count("valid") < len(verdicts)


def test_server_killed_mid_shard_then_restarted_loses_and_repeats_nothing(
    server: LlamaServer, tmp_path: Path
) -> None:
    corpus = write_corpus(tmp_path / "stories.jsonl")
    config = RunConfig.model_validate(
        {
            "corpus": corpus, "output": tmp_path / "run", "engine": "openai", "model": "smollm2",
            "max_stories": 2, "shard_size": 1, "max_actors": 1, "emotions_per_actor": 3,
            "neutral_per_actor": 1, "repetition_penalty": 1.15,
            "server": {"base_url": server.base_url, "structured_outputs": "llamacpp",
                       "concurrency": 2, "max_retries": 1, "request_timeout_s": 60},
        }
    )  # fmt: skip
    run_dir = config.output_dir

    def kill_mid_shard() -> None:
        # Right before a batch, once some shards are done and the current one has journaled
        # answers: the kill lands inside a shard, never between two.
        journals = [p for p in (run_dir / "journal").glob("*/*.jsonl") if p.stat().st_size]
        if (run_dir / "manifest" / "rewrites" / "shard-00000.json").exists() and journals:
            server.kill()

    first = Recorder(before_batch=kill_mid_shard)
    began = time.monotonic()
    with pytest.raises(ServerError, match="still failing after 1 retries"):
        run_pipeline(config, recording_spec(config, first, batch_size=2))
    assert time.monotonic() - began < 600, "the run should end soon after its server died"

    before = Interrupted.read(run_dir)
    assert before.done_keys and before.journaled

    server.start()
    second = Recorder()
    run_pipeline(config, recording_spec(config, second, batch_size=2))
    assert not second.keys & (before.done_keys | before.journaled), "a request was paid twice"
    assert before.untouched()

    stages = status_json(run_dir)["stages"]
    previous = 2
    for name in STAGE_NAMES:
        stage = stages[name]
        assert stage["shards_done"] == stage["shards_total"] == 2
        assert stage["inputs"] == stage["accepted"] + stage["rejected"] == previous
        previous = stage["outputs"]
    import pyarrow.parquet as pq

    shards = [run_dir / "labels" / f"shard-{s:05d}.parquet" for s in range(2)]
    ids = [row["utterance_id"] for path in shards for row in pq.read_table(path).to_pylist()]
    assert len(ids) == len(set(ids)) == stages["labels"]["outputs"]
