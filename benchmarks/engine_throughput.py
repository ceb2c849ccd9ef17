"""Tokens/s and schema-valid fraction of an engine on one fixed batch: 16 labelling requests
and 4 utterance-generation requests, rendered by the real stages, sent as one batch.

    python benchmarks/engine_throughput.py --engine llamacpp
    python benchmarks/engine_throughput.py --engine vllm --model DIR --dtype float32 --enforce-eager
    python benchmarks/engine_throughput.py --engine openai --model NAME --base-url URL \\
        --structured-outputs llamacpp
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from emopillars.config import RunConfig
from emopillars.engines import Message, Request, Sampling, engine_spec
from emopillars.stages import stage_context
from emopillars.stages.base import Reject, Row, Step
from emopillars.stages.decoding import decode
from emopillars.stages.labels import SoftLabel
from emopillars.stages.utterances import GenerateUtterances

STORY: Row = {
    "story_id": "b1", "title": "The Night Ferry",
    "text": "Nell runs the last ferry across the river. Her old friend Amos, now the mayor, asks "
    "her to carry a sealed crate and tell no one. A storm rises; the crate starts to leak.",
}  # fmt: skip
ACTORS = [("Nell", "the ferry pilot"), ("Amos", "the mayor"), ("Ida", "a deckhand"),
          ("Bo", "a passenger")]  # fmt: skip
UTTERANCES = [
    ("fear", "The water is over the rail and I can't see the far bank."),
    ("anger", "You lied to me, Amos, and you put my boat at risk."),
    ("gratitude", "Thank you for holding the rope when I slipped."),
    ("curiosity", "What could be in a crate that heavy?"),
    ("relief", "We made it to the dock, every one of us."),
    ("remorse", "I should never have agreed to carry it."),
    ("amusement", "Bo tried to bail water with his hat."),
    ("pride", "Twenty years and I have never lost a passenger."),
    ("nervousness", "If the inspector asks, what do I say?"),
    ("disappointment", "I thought Amos was better than this."),
    ("caring", "Sit down, Ida, you are shaking."),
    ("surprise", "The crate is full of letters?"),
    ("admiration", "Ida steered us through that like a captain."),
    ("confusion", "Why would the mayor hide mail?"),
    ("neutral", "The ferry leaves at nine tomorrow."),
    ("optimism", "The storm will pass by morning."),
]


def batch(config: RunConfig, fingerprint: str, penalty: float) -> list[tuple[Step, Request]]:
    ctx = stage_context(config)
    rows: list[tuple[Step, Row]] = [
        (SoftLabel(), {**STORY, "intended_emotion": emotion, "utterance": text})
        for emotion, text in UTTERANCES
    ]
    rows += [
        (GenerateUtterances(), {**STORY, "actor_id": f"b1/a{i}", "actor": name,
                                "actor_description": description})
        for i, (name, description) in enumerate(ACTORS)
    ]  # fmt: skip
    return [
        (
            step,
            Request(
                messages=(Message("user", step.prompt(row, ctx)),),
                schema=step.schema(ctx),
                sampling=Sampling(max_tokens=step.budget(ctx), repetition_penalty=penalty),
                engine_fingerprint=fingerprint,
            ),
        )
        for step, row in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["llamacpp", "vllm", "openai", "fake"], required=True)
    parser.add_argument("--model")
    parser.add_argument("--dtype")
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--base-url")
    parser.add_argument("--structured-outputs", default="vllm")
    parser.add_argument("--repetition-penalty", type=float, default=1.15)
    args = parser.parse_args()
    values: dict[str, object] = {"engine": args.engine, "model": args.model}
    if args.engine == "vllm":
        values["vllm"] = {"dtype": args.dtype or "auto", "enforce_eager": args.enforce_eager,
                          "max_model_len": 4096}  # fmt: skip
    if args.engine == "openai":
        values["server"] = {"base_url": args.base_url, "concurrency": 16,
                            "structured_outputs": args.structured_outputs}  # fmt: skip
    config = RunConfig.model_validate(values)
    spec = engine_spec(config)
    requests = batch(config, spec.info.fingerprint, args.repetition_penalty)
    engine = spec.load()
    try:
        began = time.perf_counter()
        results = engine.generate([request for _, request in requests])
        seconds = time.perf_counter() - began
    finally:
        engine.close()
    verdicts: Counter[str] = Counter()
    for (step, _), result in zip(requests, results, strict=True):
        try:
            decode(step, result)
            verdicts["valid"] += 1
        except Reject as reject:
            verdicts[reject.reason] += 1
    valid = verdicts["valid"]
    completion = sum(r.completion_tokens for r in results)
    prompt = sum(r.prompt_tokens for r in results)
    print(
        f"engine {spec.info.name} ({spec.info.model}): {len(results)} requests in {seconds:.1f} s"
    )
    print(f"prompt tokens {prompt}, completion tokens {completion}: "
          f"{completion / seconds:.1f} completion tokens/s")  # fmt: skip
    print(f"schema-valid answers: {valid}/{len(results)} ({valid / len(results):.0%}); "
          f"verdicts {dict(verdicts)}")  # fmt: skip


if __name__ == "__main__":
    main()
