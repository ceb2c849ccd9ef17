"""A client for OpenAI-compatible servers: `vllm serve`, llama.cpp's servers, SGLang, TGI,
hosted APIs. One HTTP session (a pool of keep-alive connections) and one event loop, in a
thread of their own, serve the engine's whole life, until close(). Up to `--concurrency`
requests are in flight at once, across every generate() call (calls may come from several
threads) and every request the scheduler streams in (`submit`; `completed` takes answers as
they finish, so a freed slot is refilled at once); transient failures are retried with
exponential backoff and jitter; a dead server ends the run's stream, or the call, with an
error, never a hang. Its messages and log lines redact credentials: the key, and any in
the base URL.

Requests are posted as raw JSON bodies over aiohttp and answers read as plain JSON: the
`openai` package's typed models and its HTTP stack cost several times more CPU per request
(`benchmarks/openai_client.py` measures both).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import threading
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from yarl import URL

from emopillars.config import ConfigError, ServerOptions
from emopillars.engines.base import FinishReason, Request, Result
from emopillars.engines.chat import as_dicts
from emopillars.secrets import redact_url

log = logging.getLogger("emopillars")
_backoff = wait_exponential_jitter(initial=1.0, max=30.0, jitter=1.0)
# Failures of the connection itself (refused, reset, cut short, timed out): worth a retry.
_TRANSIENT_TRANSPORT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class ServerError(RuntimeError):
    """The server cannot answer: a refused key, a missing model, or retries exhausted."""


class StatusError(Exception):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, headers: CIMultiDictProxy[str], body: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.message = _error_message(body)
        super().__init__(f"status {status}: {self.message}")


def api_key(options: ServerOptions) -> str:
    """The key, read from the variable the config names (the key itself is never stored)."""
    if options.api_key_env is None:
        return "EMPTY"  # local servers accept any key; some proxies insist on one
    value = os.environ.get(options.api_key_env)
    if not value:
        raise ConfigError(f"environment variable {options.api_key_env} (--api-key-env) is not set")
    return value


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, _TRANSIENT_TRANSPORT):
        return True
    if isinstance(error, StatusError):
        return error.status_code in (408, 409, 429) or error.status_code >= 500
    return False


def _wait(state: RetryCallState) -> float:
    # Honour a server's Retry-After (429, 503); otherwise back off exponentially with jitter.
    error = state.outcome.exception() if state.outcome else None
    header = error.headers.get("retry-after") if isinstance(error, StatusError) else None
    if header:
        try:
            return min(float(header), 120.0)
        except ValueError:
            pass
    return float(_backoff(state))


def _is_context_overflow(error: StatusError) -> bool:
    text = error.message.lower()
    return "context length" in text or "context_length" in text or "too long" in text


def _error_message(body: bytes) -> str:
    """The message of an error answer: OpenAI's {"error": {"message": ...}}, or the text."""
    text = body.decode(errors="replace")
    try:
        answer = json.loads(text)
    except ValueError:
        return text[:500]
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(answer, dict) and isinstance(answer.get("message"), str):
        return str(answer["message"])
    return text[:500]


def _endpoint(base_url: str) -> tuple[URL, str | None]:
    """`base_url` + /chat/completions, its query (an api-version, say) kept, and the basic
    Authorization header that credentials written into the URL make (they take precedence
    over the key, as in the `openai` client's HTTP stack)."""
    try:
        url = URL(base_url)
    except ValueError as error:
        raise ConfigError(f"--base-url {redact_url(base_url)!r} is not a URL: {error}") from None
    if not url.absolute or url.scheme not in ("http", "https"):
        raise ConfigError(f"--base-url {redact_url(base_url)!r} is not an http(s) URL")
    auth = None
    if url.user is not None or url.password is not None:
        pair = f"{url.user or ''}:{url.password or ''}".encode()
        auth = "Basic " + base64.b64encode(pair).decode()
    path = url.path.rstrip("/") + "/chat/completions"
    return url.with_user(None).with_path(path).with_query(url.query), auth


def _proxy(endpoint: URL) -> str | None:
    """The proxy that HTTP(S)_PROXY and NO_PROXY name for the server, read once: aiohttp's
    trust_env reads the environment again for every request, which doubles its CPU."""
    if urllib.request.proxy_bypass(endpoint.host or ""):
        return None
    return urllib.request.getproxies().get(endpoint.scheme)


Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Session:
    """The event loop (run by its own thread), the HTTP session and the in-flight limit."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    http: aiohttp.ClientSession
    slots: asyncio.Semaphore

    @classmethod
    def start(cls, options: ServerOptions, headers: dict[str, str]) -> _Session:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name="emopillars-openai-client", daemon=True
        )
        thread.start()

        async def open_session() -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
            # Idle connections close after 4 s, before uvicorn (vLLM, SGLang) drops them at 5 s,
            # so requests seldom meet a connection the server is closing (one that does is
            # retried as a transient failure).
            connector = aiohttp.TCPConnector(limit=options.concurrency, keepalive_timeout=4.0)
            http = aiohttp.ClientSession(
                connector=connector,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=options.request_timeout_s),
            )
            return http, asyncio.Semaphore(options.concurrency)

        http, slots = asyncio.run_coroutine_threadsafe(open_session(), loop).result()
        return cls(loop, thread, http, slots)

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.http.close(), self.loop).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


class OpenAIServerEngine:
    """`sleep` waits out each retry's backoff (asyncio.sleep; tests pass one that records).
    Nothing connects before the first generate(); close() ends the session and its thread."""

    def __init__(self, model: str, options: ServerOptions, *, sleep: Sleep = asyncio.sleep) -> None:
        self.model = model
        self.options = options
        self._key = api_key(options)
        self._endpoint, self._auth = _endpoint(options.base_url)
        self._proxy = _proxy(self._endpoint)
        # What its messages must not show: the key read from the environment (the stand-in
        # key of a local server is no secret) and, by redact_url, credentials in the URL.
        self._secrets = (self._key,) if options.api_key_env else ()
        self._retrying = AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            wait=_wait,
            sleep=sleep,
            stop=stop_after_attempt(options.max_retries + 1),
            before_sleep=lambda s: log.warning(
                "server: %s; retry %d", self._clean(_describe(s)), s.attempt_number
            ),
            reraise=True,
        )
        self._session: _Session | None = None
        self._lock = threading.Lock()
        # The stream (submit/completed): keys submitted and not yet returned by completed(),
        # the answers (or failures) finished since its last call, and the tasks running on
        # the loop (touched by the loop's thread only).
        self._finished = threading.Condition()
        self._submitted: set[str] = set()
        self._done: deque[tuple[str, Result | BaseException]] = deque()
        self._tasks: set[asyncio.Task[Result]] = set()

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
        mode = self.options.structured_outputs
        if mode == "vllm":
            body["structured_outputs"] = {"json": request.schema}
            body["repetition_penalty"] = sampling.repetition_penalty
        elif mode == "llamacpp":
            body["response_format"] = {"type": "json_object", "schema": request.schema}
            body["repeat_penalty"] = sampling.repetition_penalty
        else:
            # The OpenAI API has no repetition penalty (frequency_penalty means another thing).
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.schema},
            }
        return body

    def _started(self) -> _Session:
        with self._lock:
            if self._session is None:
                headers = {"Content-Type": "application/json", "Accept": "application/json"}
                headers["Authorization"] = self._auth or f"Bearer {self._key}"
                self._session = _Session.start(self.options, headers)
            return self._session

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        session = self._started()
        future: Future[list[Result]] = asyncio.run_coroutine_threadsafe(
            self._generate(session, requests), session.loop
        )
        try:
            return future.result()
        except BaseException:
            future.cancel()  # an interrupt here cancels the requests in flight
            raise

    def submit(self, requests: Sequence[Request]) -> None:
        """Start answering these requests on the engine's loop; returns at once. They wait
        for one of the `--concurrency` slots there, with generate()'s calls and each other."""
        if not requests:
            return
        session = self._started()
        with self._finished:
            keys = [request.key for request in requests]
            if len(set(keys)) != len(keys) or not self._submitted.isdisjoint(keys):
                raise ValueError("submit: a request key is repeated or already in flight")
            self._submitted.update(keys)
        session.loop.call_soon_threadsafe(self._spawn, session, list(requests))

    def _spawn(self, session: _Session, requests: list[Request]) -> None:
        # On the loop's thread: one task per request, each reporting when it ends.
        for request in requests:
            task = asyncio.ensure_future(self._one(session, request), loop=session.loop)
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._report, request.key))

    def _report(self, key: str, task: asyncio.Task[Result]) -> None:
        self._tasks.discard(task)
        if task.cancelled():  # close() or a failed stream: nobody waits for it any more
            with self._finished:
                self._submitted.discard(key)
                self._finished.notify_all()
            return
        error = task.exception()
        with self._finished:
            self._done.append((key, error if error is not None else task.result()))
            self._finished.notify_all()

    def completed(self) -> list[tuple[str, Result]]:
        """Wait until a submitted request is answered; every (key, result) finished since the
        last call ([] only when nothing is in flight). A server that refuses or stays down
        raises ServerError (after the answers finished before it are returned), as generate()
        does, and the requests still in flight are cancelled."""
        failure: BaseException | None = None
        answers: list[tuple[str, Result]] = []
        try:
            with self._finished:
                while not self._done and self._submitted:
                    self._finished.wait(timeout=1.0)  # a timeout keeps Ctrl-C responsive
                while self._done:
                    key, outcome = self._done[0]
                    if isinstance(outcome, BaseException):
                        if not answers:
                            failure = outcome
                        break  # with answers: journal them first; the next call raises
                    self._done.popleft()
                    self._submitted.discard(key)
                    answers.append((key, outcome))
        except BaseException:
            self._cancel_stream()  # an interrupt cancels the requests in flight
            raise
        if failure is not None:
            self._cancel_stream()
            raise failure
        return answers

    def _cancel_stream(self) -> None:
        """Cancel every streamed request still running and forget what was submitted."""
        session = self._session
        if session is not None and not session.loop.is_closed():

            async def cancel() -> None:
                tasks = list(self._tasks)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            # RuntimeError: the loop stopped meanwhile, and nothing runs on it any more.
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(cancel(), session.loop).result(timeout=30)
        # Every task has ended and reported (its callback runs before gather's): clear after.
        with self._finished:
            self._submitted.clear()
            self._done.clear()

    async def _generate(self, session: _Session, requests: Sequence[Request]) -> list[Result]:
        tasks = [asyncio.ensure_future(self._one(session, request)) for request in requests]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _one(self, session: _Session, request: Request) -> Result:
        content = json.dumps(self._request_body(request)).encode()
        async with session.slots:
            try:
                async for attempt in self._retrying.copy():
                    with attempt:
                        post = session.http.post(self._endpoint, data=content, proxy=self._proxy)
                        async with post as response:
                            body = await response.read()
                            if response.status >= 400:
                                raise StatusError(response.status, response.headers, body)
            except StatusError as error:
                if error.status_code == 400 and _is_context_overflow(error):
                    detail = self._clean(f"prompt too long: {error.message}")
                    return Result("", "error", 0, 0, error=detail)
                if _is_transient(error):
                    raise ServerError(self._clean(_exhausted(error, self.options))) from None
                raise ServerError(self._clean(_refusal(error, self.options))) from None
            except _TRANSIENT_TRANSPORT as error:
                raise ServerError(self._clean(_exhausted(error, self.options))) from None
            except aiohttp.ClientError as error:
                raise ServerError(
                    self._clean(f"cannot reach server {self.options.base_url}: {error}")
                ) from None
        return self._result(body)

    def _result(self, body: bytes) -> Result:
        try:
            answer = json.loads(body)
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
            usage = answer.get("usage") or {}
            reason: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
            return Result(
                text=text,
                finish_reason=reason,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            # One unreadable answer is a bad answer, recorded as such, not the end of the run.
            detail = f"the server's answer is not a chat completion ({error!r}): "
            return Result(
                "", "error", 0, 0, error=self._clean(detail + body[:300].decode(errors="replace"))
            )

    def close(self) -> None:
        self._cancel_stream()  # requests still streaming are cancelled, not left to the loop
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()


def _describe(state: RetryCallState) -> str:
    error = state.outcome.exception() if state.outcome else None
    return _error_text(error)


def _error_text(error: BaseException | None) -> str:
    # A request that outlived --request-timeout raises a TimeoutError that says nothing.
    if isinstance(error, TimeoutError) and not str(error):
        return "TimeoutError: no answer within --request-timeout"
    return f"{type(error).__name__}: {error}"


def _exhausted(error: BaseException, options: ServerOptions) -> str:
    return (
        f"server {options.base_url} still failing after {options.max_retries} retries "
        f"({_error_text(error)})"
    )


def _refusal(error: StatusError, options: ServerOptions) -> str:
    status = error.status_code
    hints = {
        401: f"the API key was refused: check the variable named by --api-key-env "
        f"({options.api_key_env or 'none set'})",
        403: "the key may not use this model or endpoint",
        404: "the server does not serve this model (check --model) or this URL (check --base-url)",
    }
    hint = hints.get(
        status,
        f"does the server support structured outputs as '{options.structured_outputs}'? "
        "(--structured-outputs vllm|llamacpp|json_schema)",
    )
    return f"server {options.base_url} refused the request ({status}): {hint}. {error}"
