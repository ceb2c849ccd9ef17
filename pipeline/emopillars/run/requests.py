"""The requests a run sends, and the fingerprints of what it sends.

Each request is rendered and keyed once: first-attempt requests made for a shard's fingerprint
are the ones sent. What requests of one call and attempt share (schema, sampling, engine) is
serialised once per run (engines/base.py, RequestMaker); keys stay those `Request` computes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from emopillars.config import RunConfig
from emopillars.engines import EngineSpec, Request, Sampling
from emopillars.engines.base import RequestMaker
from emopillars.hashing import stable_hash
from emopillars.stages import Stage
from emopillars.stages.base import Row, StageContext, Step


class RequestBuilder:
    def __init__(self, config: RunConfig, ctx: StageContext, spec: EngineSpec) -> None:
        self.config = config
        self.ctx = ctx
        self.spec = spec
        self._schemas: dict[str, dict[str, Any]] = {}
        self._makers: dict[tuple[str, int], RequestMaker] = {}

    def sampling(self, step: Step, attempt: int) -> Sampling:
        base = Sampling(
            max_tokens=step.budget(self.ctx),
            temperature=self.config.temperature,
            repetition_penalty=self.spec.repetition_penalty,
            seed=self.config.seed,
        )
        if attempt == 0:
            return base
        # Greedy decoding would repeat the same answer: a retry samples, with its own seed.
        return replace(
            base, temperature=self.config.retry_temperature, seed=self.config.seed + attempt
        )

    def schema(self, step: Step) -> dict[str, Any]:
        # A stage's schema depends on the config only; pydantic takes ~1 ms to build one.
        if step.call not in self._schemas:
            self._schemas[step.call] = step.schema(self.ctx)
        return self._schemas[step.call]

    def request(self, step: Step, row: Row, attempt: int) -> Request:
        maker = self._makers.get((step.call, attempt))
        if maker is None:
            maker = RequestMaker(
                self.schema(step), self.sampling(step, attempt), self.spec.info.fingerprint
            )
            self._makers[(step.call, attempt)] = maker
        return maker.make_prompt(step.prompt_pieces(row, self.ctx))

    def first_requests(self, stage: Stage, rows: list[Row]) -> list[Request]:
        """The first step's first-attempt requests, one per input row."""
        first = stage.steps[0]
        return [self.request(first, row, 0) for row in rows]

    def fingerprints(
        self, stage: Stage, first_requests: list[Request], input_sha: str
    ) -> tuple[str, str]:
        """(of what is sent, of that and how answers are parsed): equal first parts mean the
        kept answers still answer every first-attempt request."""
        requested = stable_hash(
            {
                "stage": stage.name,
                "input": input_sha,
                "requests": [request.key for request in first_requests],
                "steps": [
                    {
                        "call": step.call,
                        "template": self.ctx.template(step.call).sha256,
                        "schema": self.schema(step),
                        "sampling": self.sampling(step, 0).__dict__,
                    }
                    for step in stage.steps
                ],
                "retry": [self.config.max_attempts, self.config.retry_temperature],
                "engine": self.spec.info.fingerprint,
            },
            length=32,
        )
        parsing = [
            {
                "call": step.call,
                "version": step.parser_version,
                "params": step.parse_params(self.ctx),
            }
            for step in stage.steps
        ]
        return requested, stable_hash({"requests": requested, "parsing": parsing}, length=32)
