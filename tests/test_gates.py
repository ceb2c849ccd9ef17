"""Quality gates: each gate passes a good answer and rejects a bad one with its own reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import fake_config, write_corpus
from emopillars.api import run_pipeline
from emopillars.config import RunConfig
from emopillars.run.status import stage_totals
from emopillars.stages import stage_context
from emopillars.stages.actors import ActorsAnswer, ExtractActors
from emopillars.stages.base import Reject, StageContext
from emopillars.stages.contexts import CleanContext, ContextAnswer, GenerateContext
from emopillars.stages.gates import debris, names_only_emotion, shared_run, word_overlap
from emopillars.stages.labels import LabelsAnswer, SoftLabel
from emopillars.stages.rewrites import RewriteAnswer, RewriteUtterance
from emopillars.stages.utterances import GenerateUtterances, UtterancesAnswer
from helpers import gate_violations

STORY_TEXT = (
    "Gwen keeps the night ferry running across the grey lake. One winter evening her old "
    "friend Rafe comes aboard without a ticket and asks her to hide him from the harbour police."
)
STORY = {"story_id": "s1", "title": "Night Ferry", "text": STORY_TEXT}
ACTOR = {**STORY, "actor_id": "s1/a00", "actor": "Gwen", "actor_description": "the ferry pilot"}
UTTERANCE = {**ACTOR, "utterance_id": "s1/a00/u00", "intended_emotion": "surprise",
             "utterance": "I never thought I would see you on my boat again."}  # fmt: skip
LABELLED = {**UTTERANCE, "labels": ["surprise"], "scores": [0.8]}
SITUATION = "Rafe steps onto the ferry after ten years away and walks straight to the wheel."
CONTEXTUAL = {**LABELLED, "context_raw": SITUATION, "context": SITUATION}


@pytest.fixture
def ctx() -> StageContext:
    return stage_context(RunConfig(engine="fake"))


def context_with(**gates: Any) -> StageContext:
    return stage_context(RunConfig.model_validate({"engine": "fake", "gates": gates}))


def utterances(*texts: str) -> UtterancesAnswer:
    emotions = ["surprise", "fear", "joy", "anger", "neutral", "relief", "grief", "pride"]
    return UtterancesAnswer.model_validate(
        {"utterances": [{"emotion": e, "text": t} for e, t in zip(emotions, texts, strict=False)]}
    )


def reasons(parsed: Any) -> list[str]:
    return [reason for reason, _ in parsed.item_rejects]


def rejected(call: Any) -> str:
    with pytest.raises(Reject) as caught:
        call()
    return caught.value.reason


# -- actors ----------------------------------------------------------------------------------


def test_an_invented_character_is_rejected(ctx: StageContext) -> None:
    answer = ActorsAnswer.model_validate(
        {"characters": [{"name": n, "description": "d"} for n in ("Gwen", "Captain Rafe", "Zed")]}
    )
    parsed = ExtractActors().parse(STORY, answer, ctx)
    assert [row["actor"] for row in parsed.rows] == ["Gwen", "Captain Rafe"]
    assert parsed.item_rejects == [("actor_not_in_story", "Zed")]
    relaxed = ExtractActors().parse(STORY, answer, context_with(require_actor_in_story=False))
    assert len(relaxed.rows) == 3


# -- utterances ------------------------------------------------------------------------------

GOOD = "I never thought I would see you on my boat again."


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("Disappointment", "utterance_too_short"),
        ("Love for the deceased", "utterance_names_emotion"),
        ("Grief for the drowned sailors", "utterance_names_emotion"),
        ("{{Gwen}}: surprise when he reveals himself at the wheel", "utterance_debris"),
        ("I saw lp_14329785 on the ticket stub tonight.", "utterance_debris"),
        ("... (n) ... (f) ... 12 -- ?? !! ## ok", "utterance_debris"),
        ("She asks her to hide him from the harbour police tonight.", "utterance_copies_story"),
    ],
)
def test_each_utterance_gate_rejects_its_kind_of_text(
    bad: str, reason: str, ctx: StageContext
) -> None:
    parsed = GenerateUtterances().parse(ACTOR, utterances(GOOD, bad), ctx)
    assert [row["utterance"] for row in parsed.rows] == [GOOD]
    assert reasons(parsed) == [reason]


def test_a_near_duplicate_in_one_answer_is_rejected(ctx: StageContext) -> None:
    near = "I never thought I would see you again on my boat."
    other = "The lake is calm enough for the last crossing tonight."
    parsed = GenerateUtterances().parse(ACTOR, utterances(GOOD, near, other), ctx)
    assert [row["utterance"] for row in parsed.rows] == [GOOD, other]
    assert reasons(parsed) == ["near_duplicate_utterance"]
    assert word_overlap(GOOD, near) == 1.0 and word_overlap(GOOD, other) < 0.3


def test_an_answer_whose_utterances_all_fail_the_gates_is_retried(ctx: StageContext) -> None:
    reason = rejected(
        lambda: GenerateUtterances().parse(
            ACTOR, utterances("Disappointment", "Love for the deceased"), ctx
        )
    )
    assert reason == "no_utterances"


def test_gate_thresholds_come_from_the_config() -> None:
    short = "Finally back home."
    strict = GenerateUtterances().parse(ACTOR, utterances(GOOD, short), context_with())
    assert reasons(strict) == ["utterance_too_short"]
    lenient = context_with(min_utterance_words=3)
    assert len(GenerateUtterances().parse(ACTOR, utterances(GOOD, short), lenient).rows) == 2


def test_pure_checks_name_what_they_found(ctx: StageContext) -> None:
    assert debris("An ordinary sentence, with punctuation!", 0.5) is None
    assert debris("<|im_start|>system", 0.5) == "debris '<|'"
    assert shared_run("we hide him from the harbour police now", STORY_TEXT, 5) == (
        "hide him from the harbour"
    )
    assert shared_run(GOOD, STORY_TEXT, 8) is None and shared_run(GOOD, GOOD, 0) is None
    assert names_only_emotion("Fear grips me every night on this lake.", ctx.lexicon) is None
    assert names_only_emotion("Admiration", ctx.lexicon) == "only emotion words"
    assert names_only_emotion("And the, of a...", ctx.lexicon) is None


# -- labels ----------------------------------------------------------------------------------


def labels(*pairs: tuple[str, float]) -> LabelsAnswer:
    return LabelsAnswer.model_validate(
        {"emotions": [{"label": name, "intensity": i} for name, i in pairs]}
    )


def test_each_labelled_row_says_whether_the_intended_emotion_is_kept(ctx: StageContext) -> None:
    found = SoftLabel().parse(UTTERANCE, labels(("surprise", 0.8), ("joy", 0.4)), ctx)
    missed = SoftLabel().parse(UTTERANCE, labels(("joy", 0.8), ("surprise", 0.2)), ctx)
    assert found.rows[0]["intended_in_labels"] is True
    assert missed.rows[0]["intended_in_labels"] is False
    strict = context_with(require_intended_emotion=True)
    reason = rejected(lambda: SoftLabel().parse(UTTERANCE, labels(("joy", 0.8)), strict))
    assert reason == "intended_not_labelled"


# -- contexts --------------------------------------------------------------------------------


def test_a_short_or_noisy_context_is_rejected(ctx: StageContext) -> None:
    assert GenerateContext().parse(LABELLED, ContextAnswer(context=SITUATION), ctx).rows
    short = ContextAnswer(context="Rafe boards the ferry.")
    noisy = ContextAnswer(context="...(n)lp_14329785 (f) and then the ferry leaves the pier")
    assert rejected(lambda: GenerateContext().parse(LABELLED, short, ctx)) == "context_too_short"
    assert rejected(lambda: GenerateContext().parse(LABELLED, noisy, ctx)) == "context_debris"


def test_a_cleaned_context_that_still_names_an_emotion_is_cleaned_again(
    ctx: StageContext,
) -> None:
    assert CleanContext().parse(CONTEXTUAL, ContextAnswer(context=SITUATION), ctx).rows
    furious = ContextAnswer(context=f"{SITUATION} She is furious and deeply afraid.")
    with pytest.raises(Reject) as caught:
        CleanContext().parse(CONTEXTUAL, furious, ctx)
    assert caught.value.reason == "context_names_emotion" and caught.value.retryable
    assert "furious, afraid" in caught.value.detail


# -- rewrites --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rewrite", "reason"),
    [
        ("Night Ferry", "rewrite_too_short"),
        ("So, you came back to my boat.", None),
        (
            "So, after all of these long and silent years on the cold grey water of this "
            "lake, you really came back to my boat, as if nothing at all had happened.",
            "rewrite_length_ratio",
        ),
        ("What a happy surprise to see you on my boat again.", "rewrite_adds_emotion_words"),
        ("I NEVER thought I would see you on my boat again.", "unchanged"),
        ("You, here, on my boat {{again}}?", "rewrite_debris"),
    ],
)
def test_each_rewrite_gate(rewrite: str, reason: str | None, ctx: StageContext) -> None:
    def parse() -> Any:
        return RewriteUtterance().parse(CONTEXTUAL, RewriteAnswer(utterance=rewrite), ctx)

    if reason is None:
        assert parse().rows == [{"rewritten_utterance": rewrite}]
    else:
        assert rejected(parse) == reason


def test_no_row_of_a_fake_run_breaks_a_default_gate_and_every_drop_is_counted(
    tmp_path: Path,
) -> None:
    # The fake engine writes 3-14 random words per text: many answers fail the gates.
    corpus = write_corpus(tmp_path / "stories.jsonl")
    config = fake_config(corpus, tmp_path / "run", max_actors=3)
    run_pipeline(config)
    dataset = config.output_dir / "dataset"
    assert gate_violations(dataset) == []
    totals = stage_totals(config.output_dir)
    for name, stage in totals.items():
        assert stage.inputs == stage.accepted + stage.rejected, name
    gate_reasons = {"actor_not_in_story", "utterance_too_short", "context_too_short"}
    counted = {reason for stage in totals.values() for reason in stage.reject_reasons}
    assert gate_reasons <= counted  # the gates really removed answers, and counted them
    rejects = pq.read_table(config.output_dir / "contexts" / "rejects-00000.parquet").to_pylist()
    assert all(row["reason"] and row["detail"] for row in rejects)
