"""Quality gates: checks of what an answer says, beyond its JSON shape.

Each check returns what is wrong (a short detail for the rejects table) or None. The steps
turn a failed check into a reject with the gate's reason; the thresholds are the config's
`gates` section, so they join the fingerprint and a changed threshold re-parses kept answers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from emopillars.stages.lexicon import EmotionLexicon, word_set, word_tuple

# Template and markup leftovers that no character says: chat-template tokens, placeholders,
# instruction tags, and identifiers such as `lp_14329785`.
_DEBRIS = re.compile(r"\{\{|\}\}|<\||\|>|</?s>|\[/?INST\]|<<SYS>>|[\d_]{5,}|_{2,}")
# Words that name no one: a character called "the captain" is found by "captain".
_NOT_NAMES = frozenset({"the", "a", "an", "of", "and", "mr", "mrs", "ms", "dr"})
# An utterance thinking aloud in the first person has a pronoun or a pointing word somewhere.
_PERSONAL = frozenset(
    "i i'm i've i'll i'd me my mine myself we we're our us you you're your he he's him his she "
    "she's her it it's its they they're them their this that these those there here".split()
)
# "Love for the deceased", "Pure joy": an emotion named, not expressed.
_NAMING_PHRASE_WORDS = 6


def debris(text: str, max_non_letter_share: float) -> str | None:
    """Template or markup debris, or text that is mostly not letters."""
    found = _DEBRIS.search(text)
    if found:
        return f"debris {found.group(0)!r}"
    # Letters are never spaces: the visible characters that are not letters are the visible
    # ones less the letters. map() over str methods keeps the per-character loop in C.
    visible = len(text) - sum(map(str.isspace, text))
    if visible:
        others = visible - sum(map(str.isalpha, text))
        if others / visible > max_non_letter_share:
            return f"{others} of {visible} characters are not letters"
    return None


def too_short(text: str, minimum: int) -> str | None:
    count = len(word_tuple(text))
    return f"{count} words, fewer than {minimum}" if count < minimum else None


def names_only_emotion(text: str, lexicon: EmotionLexicon) -> str | None:
    """An emotion named instead of expressed: only emotion words, or a short phrase that
    starts with one and has no pronoun (nobody speaks in it)."""
    said = word_tuple(text)
    if not said:
        return None
    content = [word for word in said if word not in _NOT_NAMES]
    if content and all(word in lexicon.labels_of for word in content):
        return "only emotion words"
    if (
        said[0] in lexicon.labels_of
        and len(said) <= _NAMING_PHRASE_WORDS
        and not _PERSONAL & word_set(text)
    ):
        return f"a phrase naming {lexicon.labels_of[said[0]]}"
    return None


def shared_run(text: str, source: str, length: int) -> str | None:
    """A run of `length` words that `text` copies from `source` (0: no check)."""
    if length <= 0:
        return None
    said = word_tuple(text)
    if len(said) < length:
        return None
    runs = _story_runs(source, length)
    for start in range(len(said) - length + 1):
        run = tuple(said[start : start + length])
        if run in runs:
            return " ".join(run)
    return None


def _runs(sequence: Sequence[str], length: int) -> set[tuple[str, ...]]:
    return {tuple(sequence[i : i + length]) for i in range(len(sequence) - length + 1)}


@lru_cache(maxsize=64)
def _story_runs(source: str, length: int) -> frozenset[tuple[str, ...]]:
    # Every utterance of a story is checked against the same story: split it into runs once.
    return frozenset(_runs(word_tuple(source), length))


def word_overlap(first: str, second: str) -> float:
    """Jaccard similarity of the two texts' word sets."""
    a, b = word_set(first), word_set(second)
    if not a or not b:
        return 1.0 if a == b else 0.0
    return len(a & b) / len(a | b)


def name_in_story(name: str, story: str) -> bool:
    """Whether a character's name, or one of its words, occurs in the story."""
    named = [word for word in word_tuple(name) if word not in _NOT_NAMES]
    return not word_set(story).isdisjoint(named)


def length_ratio(rewritten: str, original: str) -> float:
    return len(word_tuple(rewritten)) / max(1, len(word_tuple(original)))
