"""Quality gates: checks of what an answer says, beyond its JSON shape.

Each check returns what is wrong (a short detail for the rejects table) or None. The steps
turn a failed check into a reject with the gate's reason; the thresholds are the config's
`gates` section, so they join the fingerprint and a changed threshold re-parses kept answers.
"""

from __future__ import annotations

import re
from functools import lru_cache

from emopillars.stages.lexicon import EmotionLexicon, word_set, word_tuple

# Template and markup leftovers that no character says: chat-template tokens, placeholders,
# instruction tags, and identifiers such as `lp_14329785`; that is
# r"\{\{|\}\}|<\||\|>|</?s>|\[/?INST\]|<<SYS>>|[\d_]{5,}|_{2,}", written as the first character
# of each alternative, then its rest behind a lookbehind for that character. A pattern that
# starts with a class lets the regex engine skip in C to where a match can start, instead of
# trying each alternative at every position.
_DEBRIS = re.compile(
    r"""[{}<|\[\d_]
    (?: (?<=\{)\{ | (?<=\})\} | (?<=<)\| | (?<=\|)> | (?<=<)/?s> | (?<=\[)/?INST\] | (?<=<)<SYS>>
      | (?<=[\d_])[\d_]{4,} | (?<=_)_+ )""",
    re.VERBOSE,
)
_DEBRIS_START = re.compile(r"[{}<|\[\d_]")
# ASCII bytes to delete with bytes.translate, which counts kinds of characters in C: those that
# cannot start debris, the spaces (str.isspace), and the spaces and letters (str.isalpha).
_ASCII = range(128)
_NOT_DEBRIS_START = bytes(byte for byte in _ASCII if not _DEBRIS_START.match(chr(byte)))
_ASCII_SPACES = bytes(byte for byte in _ASCII if chr(byte).isspace())
_ASCII_SPACES_AND_LETTERS = _ASCII_SPACES + bytes(byte for byte in _ASCII if chr(byte).isalpha())
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+")
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
    # The ASCII characters are looked at as bytes, in C; the few others, if any, one by one.
    ascii_bytes = text.encode("ascii", "ignore")
    rest = "" if len(ascii_bytes) == len(text) else _ASCII_RUNS.sub("", text)
    # Clean text, the usual answer, has none of the characters that start debris.
    if ascii_bytes.translate(None, _NOT_DEBRIS_START) or _DEBRIS_START.search(rest):
        found = _DEBRIS.search(text)
        if found:
            return f"debris {found.group(0)!r}"
    # Letters are never spaces: the visible characters that are not letters are the visible
    # ones less the letters.
    visible = len(ascii_bytes.translate(None, _ASCII_SPACES))
    others = len(ascii_bytes.translate(None, _ASCII_SPACES_AND_LETTERS))
    if rest:
        spaces = sum(map(str.isspace, rest))
        visible += len(rest) - spaces
        others += len(rest) - spaces - sum(map(str.isalpha, rest))
    if visible and others / visible > max_non_letter_share:
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
    labels_of = lexicon.labels_of
    content = word_set(text) - _NOT_NAMES
    if content and labels_of.keys() >= content:
        return "only emotion words"
    if (
        said[0] in labels_of
        and len(said) <= _NAMING_PHRASE_WORDS
        and _PERSONAL.isdisjoint(word_set(text))
    ):
        return f"a phrase naming {labels_of[said[0]]}"
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
        run = said[start : start + length]
        if run in runs:
            return " ".join(run)
    return None


@lru_cache(maxsize=64)
def _story_runs(source: str, length: int) -> frozenset[tuple[str, ...]]:
    # Every utterance of a story is checked against the same story: split it into runs once.
    told = word_tuple(source)
    return frozenset(told[start : start + length] for start in range(len(told) - length + 1))


def word_overlap(first: str, second: str) -> float:
    """Jaccard similarity of the two texts' word sets."""
    return jaccard(word_set(first), word_set(second))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """`word_overlap` of two word sets: each utterance of an answer is compared with every
    one kept before it, so the answer's parse gets each set once."""
    if not a or not b:
        return 1.0 if a == b else 0.0
    shared = len(a & b)
    # The union's size, without building the union.
    return shared / (len(a) + len(b) - shared)


def name_in_story(name: str, story: str) -> bool:
    """Whether a character's name, or one of its words, occurs in the story."""
    named = [word for word in word_tuple(name) if word not in _NOT_NAMES]
    return not word_set(story).isdisjoint(named)


def length_ratio(rewritten: str, original: str) -> float:
    return len(word_tuple(rewritten)) / max(1, len(word_tuple(original)))
