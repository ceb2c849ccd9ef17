"""A client for OpenAI-compatible servers: `vllm serve`, llama.cpp's servers, SGLang, TGI,
hosted APIs. Requests go out concurrently (bounded); transient failures are retried with
exponential backoff and jitter; a dead server ends the shard with an error, never a hang.
Its messages and log lines redact credentials: the key, and any in the base URL.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from emopillars.config import ConfigError, ServerOptions
from emopillars.engines.base import FinishReason, Request, Result
from emopillars.engines.chat import as_dicts
from emopillars.secrets import redact_url

log = logging.getLogger("emopillars")
_backoff = wait_exponential_jitter(initial=1.0, max=30.0, jitter=1.0)


class ServerError(RuntimeError):
    """The server cannot answer: a refused key, a missing model, or retries exhausted."""


def api_key(options: ServerOptions) -> str:
    """The key, read from the variable the config names (the key itself is never stored)."""
    if options.api_key_env is None:
        return "EMPTY"  # local servers accept any key; the client library insists on one
    value = os.environ.get(options.api_key_env)
    if not value:
        raise ConfigError(f"environment variable {options.api_key_env} (--api-key-env) is not set")
    return value


def _is_transient(error: BaseException) -> bool:
    import openai

    if isinstance(error, openai.APIConnectionError | openai.APITimeoutError):
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code in (408, 409, 429) or error.status_code >= 500
    return False


def _wait(state: RetryCallState) -> float:
    # Honour a server's Retry-After (429, 503); otherwise back off exponentially with jitter.
    error = state.outcome.exception() if state.outcome else None
    response = getattr(error, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    if header:
        try:
            return min(float(header), 120.0)
        except ValueError:
            pass
    return float(_backoff(state))


def _is_context_overflow(error: BaseException) -> bool:
    text = str(error).lower()
    return "context length" in text or "context_length" in text or "too long" in text


Sleep = Callable[[float], Awaitable[None]]


class OpenAIServerEngine:
    """`sleep` waits out each retry's backoff (asyncio.sleep; tests pass one that records)."""

    def __init__(self, model: str, options: ServerOptions, *, sleep: Sleep = asyncio.sleep) -> None:
        self.model = model
        self.options = options
        self._key = api_key(options)
        self._sleep = sleep
        # What its messages must not show: the key read from the environment (the stand-in
        # key of a local server is no secret) and, by redact_url, credentials in the URL.
        self._secrets = (self._key,) if options.api_key_env else ()

    def _clean(self, text: str) -> str:
        return redact_url(text, self._secrets)

    def _request_body(self, request: Request) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "messages": as_dicts(request.messages),
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
        }
        extra: dict[str, Any] = {}
        mode = self.options.structured_outputs
        if mode == "vllm":
            extra["structured_outputs"] = {"json": request.schema}
            extra["repetition_penalty"] = sampling.repetition_penalty
        elif mode == "llamacpp":
            body["response_format"] = {"type": "json_object", "schema": request.schema}
            extra["repeat_penalty"] = sampling.repetition_penalty
        else:
            # The OpenAI API has no repetition penalty (frequency_penalty means another thing).
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.schema},
            }
        if extra:
            body["extra_body"] = extra
        return body

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        return asyncio.run(self._generate(requests))

    async def _generate(self, requests: Sequence[Request]) -> list[Result]:
        import openai

        client = openai.AsyncOpenAI(
            base_url=self.options.base_url,
            api_key=self._key,
            timeout=self.options.request_timeout_s,
            max_retries=0,  # tenacity retries, with our policy and our logging
        )
        slots = asyncio.Semaphore(self.options.concurrency)
        try:
            tasks = [asyncio.create_task(self._one(client, slots, r)) for r in requests]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        finally:
            await client.close()

    async def _one(self, client: Any, slots: asyncio.Semaphore, request: Request) -> Result:
        import openai

        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            wait=_wait,
            sleep=self._sleep,
            stop=stop_after_attempt(self.options.max_retries + 1),
            before_sleep=lambda s: log.warning(
                "server: %s; retry %d", self._clean(_describe(s)), s.attempt_number
            ),
            reraise=True,
        )
        async with slots:
            try:
                async for attempt in retrying:
                    with attempt:
                        completion = await client.chat.completions.create(
                            **self._request_body(request)
                        )
            except openai.BadRequestError as error:
                if _is_context_overflow(error):
                    detail = self._clean(f"prompt too long: {error.message}")
                    return Result("", "error", 0, 0, error=detail)
                raise ServerError(self._clean(_refusal(error, self.options))) from None
            except openai.APIStatusError as error:
                if _is_transient(error):
                    raise ServerError(self._clean(_exhausted(error, self.options))) from None
                raise ServerError(self._clean(_refusal(error, self.options))) from None
            except (openai.APIConnectionError, openai.APITimeoutError) as error:
                raise ServerError(self._clean(_exhausted(error, self.options))) from None
        choice = completion.choices[0]
        usage = completion.usage
        reason: FinishReason = "length" if choice.finish_reason == "length" else "stop"
        return Result(
            text=choice.message.content or "",
            finish_reason=reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )

    def close(self) -> None:
        pass


def _describe(state: RetryCallState) -> str:
    error = state.outcome.exception() if state.outcome else None
    return f"{type(error).__name__}: {error}"


def _exhausted(error: BaseException, options: ServerOptions) -> str:
    return (
        f"server {options.base_url} still failing after {options.max_retries} retries "
        f"({type(error).__name__}: {error})"
    )


def _refusal(error: Any, options: ServerOptions) -> str:
    status = getattr(error, "status_code", "?")
    hints = {
        401: f"the API key was refused: check the variable named by --api-key-env "
        f"({options.api_key_env or 'none set'})",
        403: "the key may not use this model or endpoint",
        404: "the server does not serve this model (check --model) or this URL (check --base-url)",
    }
    hint = hints.get(
        status if isinstance(status, int) else 0,
        f"does the server support structured outputs as '{options.structured_outputs}'? "
        "(--structured-outputs vllm|llamacpp|json_schema)",
    )
    return f"server {options.base_url} refused the request ({status}): {hint}. {error}"
