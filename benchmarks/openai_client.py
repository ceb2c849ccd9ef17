"""Client CPU per request of the `openai` engine against a local instant mock server.

    python benchmarks/openai_client.py [--requests 2016] [--concurrency 64] [--json]
        [--curator-python PYTHON]

The workload: `--requests` labelling requests rendered by the real stage (about 2 KB each,
the JSON schema sent the vLLM way), `--concurrency` in flight, against
benchmarks/mock_openai_server.py in a subprocess, which answers every request at once with
the same canned completion. Client CPU is this process's CPU time (all its threads) from
building the client to closing it, divided by the requests; the server's CPU is not in it.

Rows: `engine` is the engine as it is (one raw-JSON HTTP client for its life);
`per-call-sdk` the engine before that change, reproduced here (a new `openai.AsyncOpenAI`
client per generate() call, the SDK's typed request and response models); `shared-sdk`
one SDK client for the engine's life, still typed. `curator` (bespokelabs-curator, its own
online processor, the same requests' messages) runs when `--curator-python` names a Python
that has it installed (it needs its tiktoken files offline: TIKTOKEN_CACHE_DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emopillars.config import RunConfig, ServerOptions
from emopillars.engines import Message, Request, Result, Sampling
from emopillars.engines.base import FinishReason
from emopillars.engines.openai_server import OpenAIServerEngine
from emopillars.stages import stage_context
from emopillars.stages.labels import SoftLabel

HERE = Path(__file__).resolve().parent
STORY = {
    "story_id": "b1",
    "title": "The Night Ferry",
    "text": "Nell runs the last ferry across the river. Her old friend Amos, now the mayor, asks "
    "her to carry a sealed crate and tell no one. A storm rises; the crate starts to leak.",
}


def workload(count: int) -> list[Request]:
    """`count` distinct labelling requests, as the runner renders them."""
    config = RunConfig(engine="fake")
    ctx = stage_context(config)
    step = SoftLabel()
    schema = step.schema(ctx)
    sampling = Sampling(max_tokens=step.budget(ctx))
    return [
        Request(
            messages=(
                Message(
                    "user",
                    step.prompt(
                        {**STORY, "intended_emotion": "fear", "utterance": _utterance(i)}, ctx
                    ),
                ),
            ),
            schema=schema,
            sampling=sampling,
            engine_fingerprint="bench",
        )
        for i in range(count)
    ]


def _utterance(i: int) -> str:
    return f"I told you at {i} minutes past nine that the crate would sink us, and it did."


@contextmanager
def mock_server() -> Iterator[str]:
    with tempfile.TemporaryDirectory():
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, str(HERE / "mock_openai_server.py"), str(port)],
            stdout=subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            process.stdout.readline()  # "ready"
            url = f"http://127.0.0.1:{port}/v1"
            with urllib.request.urlopen(f"{url}/models", timeout=10):
                pass
            yield url
        finally:
            process.terminate()
            process.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


Client = Callable[[str, int, Sequence[Request], int], list[Result]]


def run_engine(url: str, concurrency: int, requests: Sequence[Request], batch: int) -> list[Result]:
    options = ServerOptions(base_url=url, concurrency=concurrency)
    engine = OpenAIServerEngine("mock", options)
    try:
        return [
            result
            for start in range(0, len(requests), batch)
            for result in engine.generate(requests[start : start + batch])
        ]
    finally:
        engine.close()


def _sdk_body(engine: OpenAIServerEngine, request: Request) -> dict[str, Any]:
    # The engine's body with the non-OpenAI fields in `extra_body`, as the SDK wants them.
    body = engine._request_body(request)
    extra = {k: body.pop(k) for k in ("structured_outputs", "repetition_penalty") if k in body}
    return {**body, "extra_body": extra}


async def _sdk_calls(client: Any, slots: asyncio.Semaphore, bodies: list[dict[str, Any]]) -> Any:
    from tenacity import AsyncRetrying, stop_after_attempt

    async def one(body: dict[str, Any]) -> Result:
        async with slots:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(7), reraise=True):
                with attempt:
                    completion = await client.chat.completions.create(**body)
        choice, usage = completion.choices[0], completion.usage
        reason: FinishReason = "length" if choice.finish_reason == "length" else "stop"
        return Result(
            choice.message.content or "", reason, usage.prompt_tokens, usage.completion_tokens
        )

    return await asyncio.gather(*(one(body) for body in bodies))


def _sdk_client(url: str) -> Any:
    import openai

    return openai.AsyncOpenAI(base_url=url, api_key="EMPTY", timeout=300.0, max_retries=0)


def run_per_call_sdk(
    url: str, concurrency: int, requests: Sequence[Request], batch: int
) -> list[Result]:
    """The engine before this change: asyncio.run and a new AsyncOpenAI per generate()."""
    engine = OpenAIServerEngine("mock", ServerOptions(base_url=url))

    async def call(chunk: Sequence[Request]) -> list[Result]:
        client = _sdk_client(url)
        try:
            bodies = [_sdk_body(engine, r) for r in chunk]
            return list(await _sdk_calls(client, asyncio.Semaphore(concurrency), bodies))
        finally:
            await client.close()

    results: list[Result] = []
    for start in range(0, len(requests), batch):
        results += asyncio.run(call(requests[start : start + batch]))
    return results


def run_shared_sdk(
    url: str, concurrency: int, requests: Sequence[Request], batch: int
) -> list[Result]:
    """One SDK client and one loop for the whole run, typed requests and answers."""
    engine = OpenAIServerEngine("mock", ServerOptions(base_url=url))

    async def run() -> list[Result]:
        client = _sdk_client(url)
        slots = asyncio.Semaphore(concurrency)
        try:
            results: list[Result] = []
            for start in range(0, len(requests), batch):
                bodies = [_sdk_body(engine, r) for r in requests[start : start + batch]]
                results += await _sdk_calls(client, slots, bodies)
            return results
        finally:
            await client.close()

    return asyncio.run(run())


CLIENTS: dict[str, Client] = {
    "engine": run_engine,
    "per-call-sdk": run_per_call_sdk,
    "shared-sdk": run_shared_sdk,
}

CURATOR_SCRIPT = """
import json, os, resource, sys, time
from bespokelabs import curator
url, concurrency, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
prompts = json.load(open(path))

class Ask(curator.LLM):
    def prompt(self, row):
        return row["prompt"]
    def parse(self, row, response):
        return {"answer": response}

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

began_cpu, began = cpu(), time.perf_counter()
llm = Ask(model_name="mock", backend="openai",
          backend_params={"base_url": url, "api_key": "EMPTY", "max_retries": 0,
                          "max_requests_per_minute": 10**7, "max_tokens_per_minute": 10**10,
                          "max_concurrent_requests": concurrency, "require_all_responses": True})
rows = llm([{"prompt": p} for p in prompts])
print(json.dumps({"cpu_s": cpu() - began_cpu, "wall_s": time.perf_counter() - began,
                  "answers": len(rows.dataset if hasattr(rows, "dataset") else rows)}))
"""


def run_curator(
    python: str, url: str, concurrency: int, requests: Sequence[Request]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        prompts = Path(folder) / "prompts.json"
        prompts.write_text(json.dumps([r.messages[0].content for r in requests]))
        env = {**os.environ, "CURATOR_CACHE_DIR": str(Path(folder) / "cache"),
               "CURATOR_DISABLE_RICH_DISPLAY": "1", "OPENAI_API_KEY": "EMPTY"}  # fmt: skip
        done = subprocess.run(
            [python, "-c", CURATOR_SCRIPT, url, str(concurrency), str(prompts)],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"curator failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def measure(client: Client, url: str, concurrency: int, requests: Sequence[Request], batch: int
            ) -> dict[str, Any]:  # fmt: skip
    began_cpu, began = time.process_time(), time.perf_counter()
    results = client(url, concurrency, requests, batch)
    cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began
    assert len(results) == len(requests) and all(r.finish_reason == "stop" for r in results)
    return {"cpu_s": cpu, "wall_s": wall, "answers": len(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2016)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=0,
                        help="requests per generate() call (default: all in one call)")  # fmt: skip
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=list(CLIENTS))
    parser.add_argument("--curator-python", help="a Python with bespokelabs-curator installed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    requests = workload(args.requests)
    batch = args.batch or len(requests)
    rows: dict[str, dict[str, Any]] = {}
    with mock_server() as url:
        for name in args.clients:
            rows[name] = measure(CLIENTS[name], url, args.concurrency, requests, batch)
        if args.curator_python:
            rows["curator"] = run_curator(args.curator_python, url, args.concurrency, requests)
    for row in rows.values():
        row["cpu_ms_per_request"] = 1000 * row["cpu_s"] / args.requests
    if args.json:
        engine = rows.get("engine")
        summary = {
            "client_cpu_ms_per_request": engine and round(engine["cpu_ms_per_request"], 3),
            "requests": args.requests,
            "clients": {
                name: {key: round(value, 3) for key, value in row.items()}
                for name, row in rows.items()
            },
        }  # fmt: skip
        print(json.dumps(summary))
        return
    print(f"{args.requests} requests, {args.concurrency} in flight, {batch} per generate() "
          "call, local instant mock server")  # fmt: skip
    print(f"{'client':<14}{'cpu_ms/req':>11}{'cpu_s':>8}{'wall_s':>8}{'req/s':>8}")
    for name, row in rows.items():
        print(f"{name:<14}{row['cpu_ms_per_request']:>11.2f}{row['cpu_s']:>8.2f}"
              f"{row['wall_s']:>8.2f}{args.requests / row['wall_s']:>8.0f}")  # fmt: skip
    if not args.curator_python:
        print("curator: not run (no --curator-python)")


if __name__ == "__main__":
    main()
