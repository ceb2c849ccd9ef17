"""The five stages of the method, in order, each reading the rows the one before wrote."""

from dataclasses import replace

from emopillars.config import RunConfig
from emopillars.stages import actors, contexts, labels, rewrites, utterances
from emopillars.stages.base import STORY, Stage, StageContext, Step


def _chained(*stages: Stage) -> tuple[Stage, ...]:
    """Each stage's input schema is the output schema of the stage before it."""
    chained: list[Stage] = []
    schema = STORY
    for stage in stages:
        stage = replace(stage, input_schema=schema)
        chained.append(stage)
        schema = stage.output_schema
    return tuple(chained)


STAGES: tuple[Stage, ...] = _chained(
    actors.STAGE,
    utterances.STAGE,
    labels.STAGE,
    contexts.STAGE,
    rewrites.STAGE,
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
STEPS: tuple[Step, ...] = tuple(step for stage in STAGES for step in stage.steps)


def stage_context(config: RunConfig) -> StageContext:
    """The prompt folder and settings for every step of the method."""
    return StageContext.from_config(config, STEPS)


__all__ = ["STAGES", "STAGE_NAMES", "STEPS", "Stage", "stage_context"]
