"""The engine conformance check: every engine gets the same batch of real stage requests and
must answer all of them, in order, with token counts, each answer schema-valid or flagged."""

from __future__ import annotations

from collections.abc import Sequence

from emopillars.config import RunConfig
from emopillars.engines import Engine, Message, Request, Result, Sampling, engine_spec
from emopillars.stages import stage_context
from emopillars.stages.actors import ExtractActors
from emopillars.stages.base import Reject, Row, Step
from emopillars.stages.contexts import CleanContext
from emopillars.stages.decoding import decode
from emopillars.stages.labels import SoftLabel
from emopillars.stages.rewrites import RewriteUtterance

STORY: Row = {
    "story_id": "c1",
    "title": "The Ferry",
    "text": "Nell runs the last ferry across the river. One night her old friend Amos, now the "
    "mayor, asks her to carry a sealed crate and to tell no one.",
}
ACTOR: Row = {
    **STORY,
    "actor_id": "c1/a00",
    "actor": "Nell",
    "actor_description": "the ferry pilot",
}
UTTERANCE: Row = {**ACTOR, "utterance_id": "c1/a00/u00", "intended_emotion": "nervousness",
             "utterance": "I keep looking at that crate and wondering what is inside."}  # fmt: skip
CONTEXTUAL: Row = {**UTTERANCE, "labels": ["nervousness", "curiosity"], "scores": [0.8, 0.5],
              "context_raw": "Amos leaves the crate on the deck and walks away quickly.",
              "context": "Amos leaves the crate on the deck and walks away."}  # fmt: skip

# Different calls with different answer shapes: an answer in the wrong place cannot validate.
CASES: tuple[tuple[Step, Row], ...] = (
    (ExtractActors(), STORY),
    (SoftLabel(), UTTERANCE),
    (CleanContext(), CONTEXTUAL),
    (RewriteUtterance(), CONTEXTUAL),
)


def conformance_batch(engine_fingerprint: str, repetition_penalty: float = 1.1) -> list[Request]:
    config = RunConfig(
        engine="fake",
        max_actors=3,
        max_tokens={"actors": 200, "labels": 100, "clean": 120, "rewrite": 100},
    )
    ctx = stage_context(config)
    return [
        Request(
            messages=(Message("user", step.prompt(row, ctx)),),
            schema=step.schema(ctx),
            sampling=Sampling(max_tokens=step.budget(ctx), repetition_penalty=repetition_penalty),
            engine_fingerprint=engine_fingerprint,
        )
        for step, row in CASES
    ]


def check_conformance(engine: Engine, requests: Sequence[Request]) -> list[str]:
    """Run the batch; assert the contract; return each answer's verdict ("valid" or a
    reject reason) so a test can demand more, such as every answer valid."""
    results: list[Result] = engine.generate(requests)
    assert len(results) == len(requests)
    verdicts = []
    for (step, _), result in zip(CASES, results, strict=True):
        assert result.finish_reason in ("stop", "length", "error")
        if result.finish_reason != "error":
            assert result.prompt_tokens > 0 and result.completion_tokens > 0
        try:
            decode(step, result)
            verdicts.append("valid")
        except Reject as reject:  # flagged: the runner records it, nothing slips through
            verdicts.append(reject.reason)
    return verdicts


def conformance_of(config: RunConfig, repetition_penalty: float = 1.15) -> list[str]:
    """Load the configured engine, run the conformance batch through it, close it."""
    spec = engine_spec(config)
    engine = spec.load()
    try:
        return check_conformance(
            engine, conformance_batch(spec.info.fingerprint, repetition_penalty)
        )
    finally:
        engine.close()


def constrained(verdicts: list[str]) -> bool:
    """What constrained decoding promises: valid JSON of the right shape, unless cut short."""
    return set(verdicts) <= {"valid", "truncated"} and verdicts.count("valid") >= 3
