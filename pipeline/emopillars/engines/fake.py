"""A deterministic offline engine: schema-valid answers derived from each request's key.

For tests, CI and benchmarks. Optional faults (invalid JSON, truncation, empty answers,
off-schema JSON) are chosen by the key too, so a retry, whose key differs, can succeed.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Sequence
from typing import Any

from emopillars.engines.base import FinishReason, Request, Result

_WORDS = (
    "the old harbour light rain letter promise brother mayor train night market garden storm "
    "door money secret river song winter field ship sister clock road bread fire window "
    "teacher captain friend map village bridge coat dream morning silence voice"
).split()
FAULTS = ("invalid_json", "truncated", "empty", "off_schema")


def fake_value(schema: dict[str, Any], rng: random.Random, names: Sequence[str] = ()) -> Any:
    """A random value that validates against the (dereferenced) JSON schema. A string field
    called `name` takes one of `names` when there are any (so that characters are named as in
    the story, and pass the quality gate that checks it)."""
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        properties: dict[str, Any] = schema.get("properties", {})
        return {
            key: rng.choice(names) if key == "name" and names else fake_value(sub, rng, names)
            for key, sub in properties.items()
        }
    if kind == "array":
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", low + 4))
        count = rng.randint(max(low, 1), high)
        return [fake_value(schema["items"], rng, names) for _ in range(count)]
    if kind == "string":
        if schema.get("examples"):
            return rng.choice(schema["examples"])
        limit = int(schema.get("maxLength", 80))
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 14)))
        return words[:limit].strip() or "word"
    if kind == "integer":
        return rng.randint(int(schema.get("minimum", 0)), int(schema.get("maximum", 10)))
    if kind == "number":
        return round(rng.uniform(schema.get("minimum", 0.0), schema.get("maximum", 1.0)), 1)
    if kind == "boolean":
        return rng.random() < 0.5
    raise ValueError(f"fake engine cannot generate schema {schema}")


class FakeEngine:
    def __init__(self, fault_rate: float = 0.0, latency_s: float = 0.0) -> None:
        self.fault_rate = fault_rate
        self.latency_s = latency_s

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        return [self._answer(request) for request in requests]

    def _answer(self, request: Request) -> Result:
        if self.latency_s:
            time.sleep(self.latency_s)
        rng = random.Random(request.key)
        prompt_tokens = sum(len(message.content.split()) for message in request.messages)
        if rng.random() < self.fault_rate:
            fault = rng.choice(FAULTS)
            if fault == "empty":
                return Result("", "stop", prompt_tokens, 0)
            if fault == "off_schema":
                return Result('{"answer": 42}', "stop", prompt_tokens, 6)
            text = json.dumps(fake_value(request.schema, rng))[: rng.randint(1, 12)]
            reason: FinishReason = "length" if fault == "truncated" else "stop"
            return Result(text, reason, prompt_tokens, len(text) // 4 + 1)
        names = _capitalised_words(request.messages[-1].content)
        text = json.dumps(fake_value(request.schema, rng, names), ensure_ascii=False)
        return Result(text, "stop", prompt_tokens, len(text) // 4 + 1)

    def close(self) -> None:
        pass


def _capitalised_words(prompt: str) -> list[str]:
    """Capitalised words in the middle of the prompt's sentences (names, mostly), each once."""
    return list(dict.fromkeys(re.findall(r"(?<=[a-z,;] )[A-Z][a-z]{2,}\b", prompt)))
