"""The one seam every LLM call goes through: a batch of requests in, a batch of results out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from emopillars.hashing import stable_hash

FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.03
    seed: int = 0


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Request:
    """One chat request whose answer must match `schema` (a JSON schema)."""

    messages: tuple[Message, ...]
    schema: dict[str, Any]
    sampling: Sampling
    engine_fingerprint: str
    key: str = field(init=False)

    def __post_init__(self) -> None:
        # The key names what was actually sent, so it can key the answer journal and rows.
        payload = {
            "messages": [(m.role, m.content) for m in self.messages],
            "schema": self.schema,
            "sampling": self.sampling.__dict__,
            "engine": self.engine_fingerprint,
        }
        object.__setattr__(self, "key", stable_hash(payload, length=24))


class RequestMaker:
    """Makes the requests of one schema, sampling and engine, keyed as `Request` keys them.

    The key hashes the same JSON text as `Request.__post_init__` (so keys, and every
    fingerprint and kept answer named by them, stay byte-identical), but the part that all
    these requests share, the schema above all, is serialised once and its hash state
    copied per request: the key then costs the prompt's serialisation only."""

    def __init__(self, schema: dict[str, Any], sampling: Sampling, engine_fingerprint: str):
        self.schema = schema
        self.sampling = sampling
        self.engine_fingerprint = engine_fingerprint
        # stable_hash's JSON: keys sorted (engine, messages, sampling, schema), no spaces.
        self._head = hashlib.sha256(f'{{"engine":{_json(engine_fingerprint)},"messages":'.encode())
        tail = f',"sampling":{_json(sampling.__dict__)},"schema":{_json(schema)}}}'
        self._tail = tail.encode()
        # Hash states after the recurring start of prompts, by those pieces (make_prompt).
        self._prefixes: dict[tuple[str, ...], Any] = {}

    def make_prompt(self, pieces: Sequence[str]) -> Request:
        """The request of one user message, the joined pieces, keyed as `Request` keys it:
        from the pieces' JSON text, which for long ones (a template's text, a story) is made once
        and kept (JSON escapes character by character: the text of the joined pieces is the
        joined texts)."""
        # A prompt's start recurs from request to request: a template's text, the
        # definitions, a story told to each of its characters. The hash state after it is
        # kept and copied. The start ends at the last long piece before the first long one
        # seen for the first time (a context, an utterance: one row's own).
        end = 0
        for index, piece in enumerate(pieces):
            if len(piece) >= _KEPT:
                if piece not in _LONG_TEXTS:
                    break
                end = index + 1
        prefix = tuple(pieces[:end])
        state = self._prefixes.get(prefix)
        if state is None:
            state = self._head.copy()
            state.update(b'[["user","')
            _hash_pieces(state, prefix)
            if len(self._prefixes) >= _PREFIXES_KEPT:
                del self._prefixes[next(iter(self._prefixes))]  # the oldest
            self._prefixes[prefix] = state
        digest = state.copy()
        _hash_pieces(digest, pieces[end:])
        digest.update(b'"]]')
        digest.update(self._tail)
        request = object.__new__(Request)
        # A frozen dataclass refuses setattr; its fields live in its __dict__ all the same.
        request.__dict__.update(
            messages=(Message("user", "".join(pieces)),),
            schema=self.schema,
            sampling=self.sampling,
            engine_fingerprint=self.engine_fingerprint,
            key=digest.hexdigest()[:24],
        )
        return request


def _hash_pieces(digest: Any, pieces: Sequence[str]) -> None:
    """Feed the pieces' JSON text (without quotes) to the hash: long ones from the kept
    texts, runs of short ones escaped together (JSON escapes character by character, so the
    text of joined pieces is the joined texts)."""
    short: list[str] = []
    for piece in pieces:
        if len(piece) < _KEPT:
            short.append(piece)
            continue
        if short:
            digest.update(_json_text("".join(short)))
            short.clear()
        digest.update(_long_json_text(piece))
    if short:
        digest.update(_json_text("".join(short)))


# Prompt starts whose hash state a RequestMaker keeps: the stories of the shards in flight.
_PREFIXES_KEPT = 1024

# Pieces this long cost a microsecond or more to escape, and the ones that recur (template
# text, a story, the definitions) recur on every request: their JSON text is kept, oldest
# first out. Shorter ones (a name, an emotion) cost less than a lookup.
_KEPT = 128


def _json_text(piece: str) -> bytes:
    """The JSON string of `piece` without its quotes, UTF-8: what stable_hash's JSON holds."""
    return json.encoder.encode_basestring(piece)[1:-1].encode()


_LONG_TEXTS: dict[str, bytes] = {}
_LONG_TEXTS_KEPT = 4096


def _long_json_text(piece: str) -> bytes:
    text = _LONG_TEXTS.get(piece)
    if text is None:
        if len(_LONG_TEXTS) >= _LONG_TEXTS_KEPT:
            _LONG_TEXTS.pop(next(iter(_LONG_TEXTS)), None)  # the oldest
        text = _LONG_TEXTS[piece] = _json_text(piece)
    return text


# What json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")) builds on
# every call (stable_hash's JSON), built once.
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


@dataclass(frozen=True)
class Result:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None


@dataclass(frozen=True)
class EngineInfo:
    """What identifies an engine's answers; hashed into every request key."""

    name: str
    model: str  # the model id, folder or file name
    options: dict[str, Any]
    revision: str | None = None  # a pinned revision or content hash; None: not pinned

    @property
    def fingerprint(self) -> str:
        return stable_hash(
            {
                "name": self.name,
                "model": self.model,
                "revision": self.revision,
                "options": self.options,
            }
        )


class Engine(Protocol):
    def generate(self, requests: Sequence[Request]) -> list[Result]:
        """Answer every request, in order. One bad answer is a result, never an exception."""
        ...

    def close(self) -> None: ...


class StreamingEngine(Engine, Protocol):
    """An engine that takes requests while it answers others (vLLM's engine loop, a server
    with requests in flight): the runner's scheduler submits requests as soon as their inputs
    exist and takes answers as they finish, instead of calling generate() batch by batch.
    Optional: the scheduler uses these methods when an engine has them."""

    def submit(self, requests: Sequence[Request]) -> None:
        """Start answering these requests (distinct keys, none already in flight); returns
        without waiting."""
        ...

    def completed(self) -> list[tuple[str, Result]]:
        """Wait until at least one submitted request is answered; (request key, result) for
        each answered since the last call. [] only when nothing is in flight."""
        ...


@dataclass(frozen=True)
class EngineSpec:
    """An engine described without loading it: enough to fingerprint work and decide whether
    any is left, so a finished run never loads a model."""

    info: EngineInfo
    repetition_penalty: float
    # Requests per generate() call: None means the whole shard (continuous-batching engines);
    # sequential engines take small batches, each journaled before the next starts.
    batch_size: int | None
    load: Callable[[], Engine]
    # Requests the runner keeps submitted and unanswered at once, over many story shards in
    # flight: enough to keep every slot of a continuous-batching engine busy (a multiple of
    # its concurrent sequences), the batch of a sequential one. It never changes the data.
    max_in_flight: int = 1024
