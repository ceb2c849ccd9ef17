"""Telemetry computed from what the runner sends: the prompt text a prefix cache can reuse."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PrefixShare:
    """How much of each prompt repeats the start of the one sent before it: what a prefix
    cache can reuse. Counted in characters of the rendered prompts, in sending order."""

    total: int = 0
    shared: int = 0
    _previous: str = ""
    _last_shared: int = 0  # the shared length of the last pair: the next one's likely answer

    def add(self, prompt: str) -> None:
        self.total += len(prompt)
        previous, shared = self._previous, self._last_shared
        # Most often a prompt shares exactly what the last pair shared (a template's head
        # and a story, up to the row's own text): checked here, without a search.
        if not (
            shared
            and prompt.startswith(previous[:shared])
            and previous[shared : shared + 1] != prompt[shared : shared + 1]
        ):
            shared = common_prefix_length(previous, prompt, shared)
        self.shared += shared
        self._previous, self._last_shared = prompt, shared


def common_prefix_length(first: str, second: str, guess: int = 0) -> int:
    """The length of the longest common prefix. `guess`, a likely answer (the last pair's:
    a template's head and a story recur), is tried first to narrow the search."""
    # Binary search, each step comparing only the chunk past the part known to match
    # (startswith at an offset), so the copies add up to one prompt, not one per step.
    low, high = 0, min(len(first), len(second))
    if 0 < guess <= high:
        if second.startswith(first[:guess]):
            low = guess
            # The answer is most often the guess or just past it: gallop from there.
            step = 1
            while low + step <= high and second.startswith(first[low : low + step], low):
                low += step
                step *= 2
            high = min(high, low + step - 1)
        else:
            # Most often just short of the guess (one row's text starts a letter earlier
            # than the last's): gallop down from it, not a search from the start.
            high = guess - 1
            step = 1
            while high - step > 0 and not second.startswith(first[: high - step]):
                high -= step
                step *= 2
            low = max(0, high - step)
    while low < high:
        middle = (low + high + 1) // 2
        if second.startswith(first[low:middle], low):
            low = middle
        else:
            high = middle - 1
    return low
