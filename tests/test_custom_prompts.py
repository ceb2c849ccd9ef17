"""A prompt folder of one's own (`--prompts-dir`): each mistake in it is one line naming the
file, exit code 2, before any stage runs; the packaged prompts pass the same checks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from emopillars.classify.judge_stage import JUDGE_STEP
from emopillars.cli import main
from emopillars.config import ConfigError, RunConfig
from emopillars.resources import prompts_dir
from emopillars.stages import STEPS, stage_context
from emopillars.stages.base import StageContext, Step
from emopillars.stages.prompts import PromptFolderError, load_template

STORY = {"story_id": "s1", "title": "The Lighthouse", "text": "Mara keeps the lighthouse."}
# The pipeline's steps and the judge's (emopillars judge-teacher reads the same folder).
ALL_STEPS = (*STEPS, JUDGE_STEP)
ROW = {**STORY, "actor_id": "s1/a00", "actor": "Mara", "actor_description": "the keeper",
       "utterance_id": "s1/a00/u00", "intended_emotion": "fear",
       "utterance": "The waves are higher than the tower.", "labels": ["fear"],
       "context_raw": "A storm rises.", "context": "A storm rises."}  # fmt: skip

Break = Callable[[Path], object]  # breaks one file of a copied prompt folder (prompts/v1)


def _write(name: str, text: str) -> Break:
    return lambda folder: (folder / name).write_text(text, encoding="utf-8")


def _replace(name: str, old: str, new: str) -> Break:
    def edit(folder: Path) -> None:
        text = (folder / name).read_text(encoding="utf-8")
        assert old in text
        (folder / name).write_text(text.replace(old, new, 1), encoding="utf-8")

    return edit


def _bytes(name: str, data: bytes) -> Break:
    return lambda folder: (folder / name).write_bytes(data)


def _remove(name: str) -> Break:
    return lambda folder: (folder / name).unlink()


# (the broken file, how it breaks, words the error line must hold)
CASES: dict[str, tuple[str, Break, str]] = {
    "misspelled placeholder": (
        "labels.txt",
        _replace("labels.txt", "$utterance", "$utterancez"),
        "unknown placeholders $utterancez",
    ),
    "placeholder of another step": ("clean.txt", _write("clean.txt", "$story $context"), "$story"),
    "synonyms not json": ("synonyms.json", _write("synonyms.json", "{'hope': optimism"), "JSON"),
    "synonyms not an object": ("synonyms.json", _write("synonyms.json", "[]"), "JSON object"),
    "synonym to an unknown label": (
        "synonyms.json",
        _write("synonyms.json", '{"hope": "optimsm"}'),
        "unknown labels",
    ),
    "synonym key that is a label": (
        "synonyms.json",
        _write("synonyms.json", '{"Joy": "love"}'),
        "is a label itself",
    ),
    "synonym keys alike that map apart": (
        "synonyms.json",
        _write("synonyms.json", '{"Hopeful": "optimism", "hopeful.": "desire"}'),
        "are the same word to the lookup",
    ),
    "synonym not a string": ("synonyms.json", _write("synonyms.json", '{"hope": ["joy"]}'), "str"),
    "definitions missing a label": (
        "definitions.json",
        _write("definitions.json", '{"joy": "happiness"}'),
        "lacks definitions",
    ),
    "emotion words not lists": (
        "emotion_words.json",
        _write("emotion_words.json", '{"joy": "glad"}'),
        "list of words",
    ),
    "template not utf-8": (
        "context.txt",
        _bytes("context.txt", "Caf\xe9 $story".encode("latin-1")),
        "UTF-8",
    ),
    "contrasts not utf-8": ("contrasts.txt", _bytes("contrasts.txt", b"\xff\xfe"), "UTF-8"),
    "invalid dollar before a space": (
        "rewrite.txt",
        _write("rewrite.txt", "Pay $ 5: $utterance"),
        "$$",
    ),
    "invalid dollar before a digit": (
        "actors.txt",
        _write("actors.txt", "$story\ncosts $5"),
        "line 2",
    ),
    "missing template": ("utterances.txt", _remove("utterances.txt"), "needs it"),
    "missing contrasts": ("contrasts.txt", _remove("contrasts.txt"), "needs it"),
    "empty template": ("clean.txt", _write("clean.txt", " \n\n"), "empty"),
}


def _own_prompts(tmp_path: Path, breaking: Break | None = None) -> Path:
    """A copy of the packaged prompts with one file broken; the prompts_dir to pass."""
    own = tmp_path / "my_prompts"
    shutil.copytree(prompts_dir(), own)
    if breaking is not None:
        breaking(own / "v1")
    return own


@pytest.mark.parametrize("case", CASES)
def test_a_broken_prompt_folder_stops_the_run_before_any_stage(
    case: str, tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, breaking, words = CASES[case]
    own = _own_prompts(tmp_path, breaking)
    output = tmp_path / "run"
    code = main(["run", "--engine", "fake", "--corpus", str(corpus), "--output", str(output),
                 "--max-stories", "2", "--quiet", "--prompts-dir", str(own)])  # fmt: skip
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(own / "v1" / name) in lines[0] and words in lines[0]
    assert not output.exists()  # no stage ran, not even the corpus was sharded


@pytest.mark.parametrize("case", CASES)
def test_the_library_raises_a_config_error_naming_the_file(case: str, tmp_path: Path) -> None:
    name, breaking, _ = CASES[case]
    own = _own_prompts(tmp_path, breaking)
    with pytest.raises(ConfigError, match=name.replace(".", r"\.")):
        stage_context(RunConfig(engine="fake", prompts_dir=own))


def test_a_template_may_leave_out_what_its_step_provides(tmp_path: Path) -> None:
    own = _own_prompts(tmp_path, _write("labels.txt", "Label: $utterance ($$5 per label)"))
    ctx = stage_context(RunConfig(engine="fake", prompts_dir=own))
    labels = next(step for step in STEPS if step.call == "labels")
    assert labels.prompt(ROW, ctx) == f"Label: {ROW['utterance']} ($5 per label)"


def test_the_packaged_prompts_pass_the_checks() -> None:
    ctx = StageContext.from_config(RunConfig(engine="fake"), ALL_STEPS)
    for step in ALL_STEPS:
        assert step.placeholders is not None
        # The packaged templates use every value their step provides.
        assert ctx.template(step.call).placeholders == step.placeholders, step.call


@pytest.mark.parametrize("step", ALL_STEPS, ids=lambda step: step.call)
def test_each_step_declares_the_placeholders_it_provides(step: Step) -> None:
    ctx = StageContext.from_config(RunConfig(engine="fake"), ALL_STEPS)
    assert frozenset(step.prompt_values(ROW, ctx)) == step.placeholders


def test_a_step_without_declared_placeholders_is_checked_when_rendered(tmp_path: Path) -> None:
    (tmp_path / "judge.txt").write_text("$anything", encoding="utf-8")
    assert load_template(tmp_path, "judge", None).placeholders == {"anything"}
    with pytest.raises(PromptFolderError, match=r"\$anything"):
        load_template(tmp_path, "judge", frozenset({"text"}))


def test_synonym_keys_are_looked_up_as_model_labels_are(tmp_path: Path) -> None:
    """A key written with capitals, `_` or end punctuation matches the labels a model writes
    that way; before, such a key never matched anything, silently."""
    from emopillars.stages.taxonomy import load_taxonomy

    own = _own_prompts(
        tmp_path,
        _write("synonyms.json", '{"Very_Happy": "joy", "Scared!": "fear", "scared": "fear"}'),
    )
    taxonomy = load_taxonomy(own / "v1")
    assert taxonomy.synonyms == {"very happy": "joy", "scared": "fear"}
    for written in ("very happy", "Very_Happy", "VERY HAPPY."):
        assert taxonomy.map_label(written) == "joy"
    assert taxonomy.map_label(" scared ") == "fear" and taxonomy.map_label("sad-ish") is None
