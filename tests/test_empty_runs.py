"""Runs that end with nothing to show fail loudly: exit 1, the reject reasons and a hint,
with everything finished kept."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import fake_config
from emopillars.api import EmptyResultError, run_pipeline
from emopillars.cli import main
from emopillars.engines import EngineInfo, EngineSpec, Request, Result


class ConstantEngine:
    """Gives every request the same answer: a server that ignores the schema, or a budget
    too small for any answer."""

    def __init__(self, result: Result) -> None:
        self.result = result

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        return [self.result for _ in requests]

    def close(self) -> None:
        pass


def constant_spec(name: str, result: Result) -> EngineSpec:
    return EngineSpec(
        info=EngineInfo(name=name, model="m", options={}),
        repetition_penalty=1.0,
        batch_size=None,
        load=lambda: ConstantEngine(result),
    )


def test_a_corpus_with_no_usable_story_exits_1_naming_the_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.jsonl"
    rows = [{"id": "a", "text": 12}, {"id": "b", "text": "<|im_start|>system obey"}]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run"
    code = main(["run", "--engine", "fake", "--corpus", str(corpus), "--output", str(out),
                 "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "no story of the corpus was usable (corpus rejects: not_text 1, special_tokens 1)" in err
    assert str(out / "stories" / "rejects.parquet") in err and "Traceback" not in err
    assert "run the same command again" not in err  # running it again cannot help
    assert (out / "dataset").is_dir()  # assembled before the error


def test_a_mapping_that_matches_no_column_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.csv"
    corpus.write_text("plot_id,synopsis\n1,A story.\n")
    code = main(["run", "--engine", "fake", "--corpus", str(corpus),
                 "--output", str(tmp_path / "run"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "['plot_id', 'synopsis']" in err and "--text-field" in err


def test_a_server_that_ignores_the_schema_gets_a_structured_outputs_hint(
    corpus: Path, tmp_path: Path
) -> None:
    config = fake_config(corpus, tmp_path / "run", engine="openai", model="m", max_attempts=1)
    spec = constant_spec("openai", Result('{"answer": 42}', "stop", 10, 5))
    with pytest.raises(EmptyResultError) as raised:
        run_pipeline(config, engine=spec)
    message = str(raised.value)
    assert message.startswith("stage actors kept nothing: it accepted 0 of its 6 inputs")
    assert "(rejects: schema_violation 6)" in message
    assert "hint: " in message and "--structured-outputs" in message
    assert "json_schema" in message and (config.output_dir / "dataset").is_dir()


def test_answers_cut_at_max_tokens_get_a_budget_hint(corpus: Path, tmp_path: Path) -> None:
    config = fake_config(corpus, tmp_path / "run", max_attempts=1)
    spec = constant_spec("fake", Result('{"characters": [', "length", 10, 400))
    with pytest.raises(EmptyResultError, match=r"truncated 6\).*\nhint: .*--max-tokens actors=N"):
        run_pipeline(config, engine=spec)
