"""decode() takes pydantic's one-pass JSON validation where it can; what it returns, and each
reject it raises, stay those of json.loads (strict=False) then model_validate."""

from __future__ import annotations

import json
from typing import Any

import pytest
from emopillars.engines import Result
from emopillars.stages import STEPS
from emopillars.stages.base import Reject, Step
from emopillars.stages.decoding import decode
from pydantic import ValidationError

ANSWERS = [
    '{"characters": [{"name": "Anna", "description": "a baker"}]}',
    '{"characters": [{"name": "", "description": "nameless"}]}',
    '{"utterances": [{"emotion": "joy", "text": "We won the cup at last!"}]}',
    '{"utterances": [{"emotion": "glee", "text": "We won the cup at last!"}]}',
    '{"emotions": [{"label": "joy", "intensity": 0.7}, {"label": "awe", "intensity": "0.3"}]}',
    '{"emotions": [{"label": "joy", "intensity": 1.5}]}',
    '{"emotions": [{"label": "joy", "intensity": 1}], "emotions": []}',
    '{"context": "She waits by the door.\\nThe clock ticks."}',
    '{"context": "She waits by the door.\nThe clock ticks."}',  # a raw newline: json.loads only
    '{"context": "\ud800 a lone surrogate in a context"}',
    '{"context": "She waits by the door.", "extra": 1}',
    '{"utterance": "Fine, then."}',
    '{"utterance": "Fine, then."} trailing',
    '["not", "an", "object"]',
    "{}",
    '{"utterance": NaN}',
]


def reference(step: Step, text: str) -> Any:
    try:
        value = json.loads(text, strict=False)
    except json.JSONDecodeError as error:
        raise Reject("invalid_json", str(error)) from None
    try:
        return step.answer.model_validate(value)
    except ValidationError as error:
        raise Reject("schema_violation", str(error.errors(include_url=False))[:500]) from None


def outcome(function: Any, step: Step, text: str) -> tuple[str, Any]:
    try:
        return "answer", function(step, text)
    except Reject as reject:
        return "reject", (reject.reason, reject.detail)


@pytest.mark.parametrize("step", STEPS, ids=[step.call for step in STEPS])
def test_decode_agrees_with_loading_then_validating(step: Step) -> None:
    for text in ANSWERS:
        fast = outcome(lambda s, t: decode(s, Result(t, "stop", 1, 1)), step, text)
        assert fast == outcome(reference, step, text), text
