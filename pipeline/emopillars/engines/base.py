"""The one seam every LLM call goes through: a batch of requests in, a batch of results out."""

from __future__ import annotations

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
