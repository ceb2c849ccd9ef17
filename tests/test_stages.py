"""Request building and answer parsing of every LLM call, on fixture rows."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from emopillars.config import ConfigError, RunConfig
from emopillars.stages import STAGES, stage_context
from emopillars.stages.actors import ActorsAnswer, ExtractActors
from emopillars.stages.base import Reject, StageContext
from emopillars.stages.contexts import CleanContext, ContextAnswer, GenerateContext
from emopillars.stages.labels import LabelsAnswer, SoftLabel
from emopillars.stages.rewrites import RewriteAnswer, RewriteUtterance
from emopillars.stages.taxonomy import EMOTIONS, NEUTRAL
from emopillars.stages.utterances import GenerateUtterances, UtterancesAnswer, assigned_emotions

STORY = {"story_id": "s1", "title": "The Lighthouse",
         "text": "Mara keeps the lighthouse with Tomas. Ines is rescued from a storm."}  # fmt: skip
ACTOR = {**STORY, "actor_id": "s1/a00", "actor": "Mara", "actor_description": "the keeper"}
UTTERANCE = {**ACTOR, "utterance_id": "s1/a00/u00", "intended_emotion": "fear",
             "utterance": "The waves are higher than the tower."}  # fmt: skip
LABELLED = {**UTTERANCE, "labels": ["fear", "nervousness"], "scores": [0.9, 0.4]}
SITUATION = "A storm rises over the bay while Mara climbs the tower stairs."
CONTEXTUAL = {**LABELLED, "context_raw": SITUATION, "context": SITUATION}


@pytest.fixture
def ctx() -> StageContext:
    return stage_context(RunConfig(engine="fake"))


def test_utterance_prompt_orders_static_story_actor_then_task(ctx: StageContext) -> None:
    prompt = GenerateUtterances().prompt(ACTOR, ctx)
    positions = [
        prompt.index(ctx.taxonomy.definitions["disappointment"]),
        prompt.index(STORY["text"]),
        prompt.index("Mara, the keeper"),
        prompt.index("Emotions, in this order:"),
    ]
    assert positions == sorted(positions)


def test_requests_of_one_story_share_the_prompt_head(ctx: StageContext) -> None:
    # A prefix cache reuses identical leading text: everything up to the actor must match.
    other = {**ACTOR, "actor_id": "s1/a01", "actor": "Tomas", "actor_description": "brother"}
    first, second = GenerateUtterances().prompt(ACTOR, ctx), GenerateUtterances().prompt(other, ctx)
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert first[:shared].endswith("Character: ")
    assert STORY["text"] in first[:shared]


def test_labelling_prompt_leaves_the_story_out(ctx: StageContext) -> None:
    prompt = SoftLabel().prompt({**UTTERANCE, "text": "SECRET STORY TEXT"}, ctx)
    assert "SECRET STORY TEXT" not in prompt
    assert UTTERANCE["utterance"] in prompt and "Intended emotion: fear" in prompt


@pytest.mark.parametrize(
    ("step", "row"),
    [(ExtractActors(), STORY), (GenerateUtterances(), ACTOR), (SoftLabel(), UTTERANCE),
     (GenerateContext(), LABELLED), (CleanContext(), CONTEXTUAL), (RewriteUtterance(), CONTEXTUAL)],
)  # fmt: skip
def test_every_call_renders_fully_and_has_a_bounded_flat_schema(
    step: Any, row: dict[str, Any], ctx: StageContext
) -> None:
    prompt = step.prompt(row, ctx)
    assert "$" not in prompt and "JSON" in prompt
    schema = step.schema(ctx)

    def walk(node: Any) -> None:
        assert "$ref" not in node
        if node.get("type") == "string" and "enum" not in node:
            assert node["maxLength"] <= 700
        if node.get("type") == "array":
            assert node["maxItems"] <= 40
            walk(node["items"])
        for sub in node.get("properties", {}).values():
            walk(sub)

    walk(schema)


def test_stages_chain_their_schemas_from_what_the_steps_declare() -> None:
    names = [stage.name for stage in STAGES]
    assert names == ["actors", "utterances", "labels", "contexts", "rewrites"]
    assert STAGES[0].input_schema.names == ["story_id", "title", "text"]
    for upstream, downstream in itertools.pairwise(STAGES):
        assert downstream.input_schema == upstream.output_schema
    for stage in STAGES:
        added = stage.output_schema.names[len(stage.input_schema.names) :]
        declared = [
            name for step in stage.steps for name in (*step.column_names, step.request_column)
        ]
        # Each step adds its own columns and never overwrites a column it was given.
        assert sorted(added) == sorted(declared)
        assert not set(added) & set(stage.input_schema.names)
    assert "labels_request" in STAGES[2].output_schema.names


def test_a_budget_for_a_call_no_step_makes_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown calls \['utterance'\]"):
        stage_context(RunConfig(engine="fake", max_tokens={"utterance": 900}))
    own = stage_context(RunConfig(engine="fake", max_tokens={"utterances": 900}))
    assert GenerateUtterances().budget(own) == 900
    assert SoftLabel().budget(own) == SoftLabel.max_tokens


def test_actors_are_deduplicated_and_capped(ctx: StageContext) -> None:
    answer = ActorsAnswer.model_validate(
        {
            "characters": [
                {"name": n, "description": "d"} for n in ("Mara", "mara ", "Tomas", "Ines")
            ]
        }
    )
    capped = stage_context(RunConfig(engine="fake", max_actors=2))
    parsed = ExtractActors().parse(STORY, answer, capped)
    assert [row["actor"] for row in parsed.rows] == ["Mara", "Tomas"]
    assert [row["actor_id"] for row in parsed.rows] == ["s1/a00", "s1/a01"]
    assert parsed.item_rejects == [("duplicate_actor", "mara"), ("over_max_actors", "Ines")]
    assert ExtractActors().schema(capped)["properties"]["characters"]["maxItems"] == 2


def test_assigned_emotions_are_distinct_deterministic_and_end_neutral(ctx: StageContext) -> None:
    emotions = assigned_emotions("s1/a00", ctx)
    assert emotions == assigned_emotions("s1/a00", ctx)
    assert emotions[-2:] == [NEUTRAL, NEUTRAL]
    assert len(set(emotions[:-2])) == 8 and set(emotions[:-2]) <= set(EMOTIONS)
    assert emotions != assigned_emotions("s1/a01", ctx)


def test_utterance_duplicates_become_item_rejects(ctx: StageContext) -> None:
    items = [
        {"emotion": "fear", "text": "The sea is rising fast."},
        {"emotion": "joy", "text": "the sea is  rising fast."},
        {"emotion": "fear", "text": "I hear the hull breaking."},
        {"emotion": "neutral", "text": "The lamp needs oil today."},
        {"emotion": "neutral", "text": "The tide turns at six."},
    ]
    answer = UtterancesAnswer.model_validate({"utterances": items})
    parsed = GenerateUtterances().parse(ACTOR, answer, ctx)
    assert [r["intended_emotion"] for r in parsed.rows] == ["fear", "neutral", "neutral"]
    assert [reason for reason, _ in parsed.item_rejects] == [
        "duplicate_utterance",
        "duplicate_emotion",
    ]
    assert GenerateUtterances().schema(ctx)["properties"]["utterances"]["minItems"] == 10


def test_utterance_emotion_must_be_in_the_taxonomy() -> None:
    with pytest.raises(ValueError, match="not a GoEmotions label"):
        UtterancesAnswer.model_validate(
            {"utterances": [{"emotion": "hope", "text": "It will be fine."}]}
        )


def labels(*pairs: tuple[str, float]) -> LabelsAnswer:
    return LabelsAnswer.model_validate(
        {"emotions": [{"label": name, "intensity": i} for name, i in pairs]}
    )


def test_labels_are_mapped_thresholded_sorted_and_unmapped_ones_counted(ctx: StageContext) -> None:
    answer = labels(("Anxiety", 0.6), ("fear", 0.9), ("determination", 0.8), ("joy", 0.2),
                    ("nervousness", 0.4))  # fmt: skip
    parsed = SoftLabel().parse(UTTERANCE, answer, ctx)
    assert parsed.rows == [
        {
            "labels": ["fear", "nervousness"],
            "scores": [0.9, 0.6],
            "unmapped_labels": ["determination"],
            "intended_in_labels": True,
        }
    ]
    assert parsed.item_rejects == [("unmapped_label", "determination")]


def test_label_answers_without_usable_labels_are_rejected(ctx: StageContext) -> None:
    with pytest.raises(Reject) as off:
        SoftLabel().parse(UTTERANCE, labels(("determination", 0.9)), ctx)
    assert off.value.reason == "off_taxonomy_only" and off.value.retryable
    with pytest.raises(Reject) as low:
        SoftLabel().parse(UTTERANCE, labels(("fear", 0.2)), ctx)
    # A valid answer that finds every emotion weak is final: retrying would bias intensities.
    assert low.value.reason == "below_threshold" and not low.value.retryable


def test_intensity_outside_the_scale_is_a_schema_violation() -> None:
    with pytest.raises(ValueError):
        labels(("fear", 1.5))
    assert SoftLabel().schema(stage_context(RunConfig(engine="fake")))["properties"]["emotions"][
        "items"
    ]["properties"]["intensity"]["enum"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def test_context_must_not_quote_the_utterance(ctx: StageContext) -> None:
    quoted = ContextAnswer(context=f'Mara says "{UTTERANCE["utterance"]}" to the sea.')
    with pytest.raises(Reject, match="context_quotes_utterance"):
        GenerateContext().parse(LABELLED, quoted, ctx)
    parsed = CleanContext().parse(CONTEXTUAL, ContextAnswer(context=f" {SITUATION} "), ctx)
    assert parsed.rows == [{"context": SITUATION}]


def test_rewrite_must_change_the_utterance(ctx: StageContext) -> None:
    with pytest.raises(Reject, match="unchanged"):
        RewriteUtterance().parse(
            CONTEXTUAL, RewriteAnswer(utterance=UTTERANCE["utterance"].upper()), ctx
        )
    parsed = RewriteUtterance().parse(
        CONTEXTUAL, RewriteAnswer(utterance="Look at the water."), ctx
    )
    assert parsed.rows == [{"rewritten_utterance": "Look at the water."}]


def test_a_prompt_folder_of_ones_own_is_used(tmp_path: Path) -> None:
    import shutil

    from emopillars.resources import prompts_dir

    shutil.copytree(prompts_dir(), tmp_path / "prompts")
    (tmp_path / "prompts" / "v1" / "clean.txt").write_text("Clean this: $context", encoding="utf-8")
    own = stage_context(RunConfig(engine="fake", prompts_dir=tmp_path / "prompts"))
    assert CleanContext().prompt(CONTEXTUAL, own) == f"Clean this: {SITUATION}"
    assert (
        own.prompt_files_sha256["clean.txt"]
        != stage_context(RunConfig(engine="fake")).prompt_files_sha256["clean.txt"]
    )
