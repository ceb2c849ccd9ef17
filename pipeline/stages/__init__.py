"""The five stages of the method, in order."""

from pipeline.stages import actors, contexts, labels, rewrites, utterances
from pipeline.stages.base import Stage

STAGES: tuple[Stage, ...] = (
    actors.STAGE,
    utterances.STAGE,
    labels.STAGE,
    contexts.STAGE,
    rewrites.STAGE,
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)

__all__ = ["STAGES", "STAGE_NAMES", "Stage"]
