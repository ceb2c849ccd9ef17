"""Chat-message helpers shared by the engines."""

from __future__ import annotations

from collections.abc import Sequence

from emopillars.engines.base import Message


def fold_system_turns(messages: Sequence[Message]) -> tuple[Message, ...]:
    """Move system text into the first user turn, for chat templates without a system role
    (Mistral-7B-Instruct-v0.2, the paper's teacher, raises on one)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return tuple(rest)
    if rest and rest[0].role == "user":
        return (Message("user", f"{system}\n\n{rest[0].content}"), *rest[1:])
    return (Message("user", system), *rest)


def as_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]
