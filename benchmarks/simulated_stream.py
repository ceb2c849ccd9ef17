"""The simulated engine of simulated_engine.py, fed as a stream: the way the runner drives
vLLM (engines/vllm.py: `submit` through `LLM.enqueue_chat`, `completed` through the steps of
vLLM's engine loop).

Requests submitted join the engine's queue at its current virtual time; `completed` runs the
engine until some sequences finish. The model, the answers, the lengths and the accounting
(work per stage, prefix sharing, the tokens reported in results) are SimulatedEngine's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from emopillars.engines import Request, Result
from emopillars.run.telemetry import common_prefix_length
from simulated_engine import SimulatedEngine


class StreamingSimulatedEngine(SimulatedEngine):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._in_flight: dict[int, tuple[str, Result]] = {}  # batcher id -> (key, result)

    def submit(self, requests: Sequence[Request]) -> None:
        with self._lock:
            self.calls += 1
            stages = [self.stage_of(request) for request in requests]
            results = self._answers(requests, stages)
            for request, stage, result in zip(requests, stages, results, strict=True):
                prompt = "".join(message.content for message in request.messages)
                shared = common_prefix_length(self._previous_prompt, prompt)
                self._previous_prompt = prompt
                tokens = self.lengths.draw(stage, request.key, request.sampling.max_tokens)
                prefill = math.ceil((len(prompt) - shared) / 4)
                work = self.work[stage]
                work.requests += 1
                work.completion_tokens += tokens
                work.prefill_tokens += prefill
                timed = replace(
                    result, prompt_tokens=math.ceil(len(prompt) / 4), completion_tokens=tokens
                )
                self._in_flight[self.batcher.submit(tokens, prefill)] = (request.key, timed)

    def completed(self) -> list[tuple[str, Result]]:
        with self._lock:
            return [self._in_flight.pop(done) for done in self.batcher.next_finished()]
