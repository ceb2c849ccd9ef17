"""From an engine's raw answer to the validated answer model, or a reject with its reason."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from emopillars.engines import Result
from emopillars.stages.base import Reject, Step

# What json.loads(text, strict=False) builds on every call, built once.
_DECODER = json.JSONDecoder(strict=False)


def decode(step: Step, result: Result) -> Any:
    """The validated answer model, or a Reject that says what was wrong with the answer."""
    if result.finish_reason == "error":
        raise Reject("engine_error", result.error or "", retryable=False)
    if result.finish_reason == "length":
        raise Reject("truncated", f"hit max_tokens after {result.completion_tokens} tokens")
    if not result.text.strip():
        raise Reject("empty")
    if not result.text.startswith("\ufeff"):
        try:
            # pydantic parses and validates well-formed JSON in one pass, in Rust; for all
            # else (raw newlines in strings, a wrong shape) the path below decides, and
            # words the reject, exactly as it always has.
            return step.answer.model_validate_json(result.text)
        except ValidationError:
            pass
    try:
        # strict=False admits raw newlines inside strings: llama.cpp's JSON grammar lets the
        # model write them, and they carry no fault worth a retry.
        text = result.text
        # json.loads also refuses a leading BOM with its own message: let it say so.
        value = (
            json.loads(text, strict=False) if text.startswith("\ufeff") else _DECODER.decode(text)
        )
    except json.JSONDecodeError as error:
        raise Reject("invalid_json", str(error)) from None
    try:
        return step.answer.model_validate(value)
    except ValidationError as error:
        raise Reject("schema_violation", str(error.errors(include_url=False))[:500]) from None
