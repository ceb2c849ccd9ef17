"""Words of text, and the emotion words among them (prompts/<version>/emotion_words.json).

Shared by the quality gates, which keep contexts and rewrites from naming emotions, and by the
quality report, which measures how often they still do."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from emopillars.stages.prompts import PromptFolderError, read_prompt_json
from emopillars.stages.taxonomy import LABELS, NEUTRAL

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def words(text: str) -> list[str]:
    """The words of a text, lowercased: runs of letters, with inner apostrophes."""
    return list(word_tuple(text))


# For ASCII text: lowercase the letters, keep apostrophes, and turn every other byte into a
# space, so that one bytes.translate and a split find the words in C.
_ASCII_WORD_BYTES = bytes(
    ord(chr(byte).lower()) if byte < 128 and (chr(byte).isalpha() or chr(byte) == "'") else 32
    for byte in range(256)
)
# An apostrophe belongs to a word only between two letters ("don't", not "'tis" or "dogs'").
_LONE_APOSTROPHE = re.compile(r"'(?:(?<![a-z]')|(?![a-z]))")


@lru_cache(maxsize=4096)
def word_tuple(text: str) -> tuple[str, ...]:
    """`words` of a text, cached: the gates split the same story, utterance or context again
    and again (each pair of a story's utterances, a rewrite against its original)."""
    if not text.isascii():
        # ’ and ' are the same to _WORD, and ’ comes out as ': replacing it first gives the
        # same words, and often leaves ASCII text (models like curly apostrophes).
        text = text.replace("’", "'")
    if text.isascii():
        # The same words as _WORD.findall(text.lower()): in ASCII the word characters are the
        # letters, which translate to their lowercase, and ' is all that joins them.
        spaced = text.encode("ascii").translate(_ASCII_WORD_BYTES).decode("ascii")
        if "'" in spaced:
            spaced = _LONE_APOSTROPHE.sub(" ", spaced)
        return tuple(spaced.split())
    found = _WORD.findall(text)
    if not found:
        return ()
    # One lower() for all words: words hold no spaces, and lowercasing looks at nothing past a
    # space (not even final sigma), so each word lowercases as it would alone.
    return tuple(" ".join(found).lower().split(" "))


@lru_cache(maxsize=4096)
def word_set(text: str) -> frozenset[str]:
    """The set of a text's words, cached like `word_tuple`."""
    return frozenset(word_tuple(text))


@dataclass(frozen=True)
class EmotionLexicon:
    """Emotion words and the label each names (neutral has none)."""

    labels_of: dict[str, str]  # word -> label

    def found(self, text: str) -> list[str]:
        """The emotion words of a text, in order, repeats included."""
        labels_of = self.labels_of
        return [word for word in word_tuple(text) if word in labels_of]

    def count(self, text: str) -> int:
        return len(self.found(text))


def load_lexicon(folder: Path) -> EmotionLexicon:
    """Read emotion_words.json of one prompt folder (e.g. prompts/v1); FileNotFoundError when
    the folder has none (the quality report then measures without it), PromptFolderError
    when it is not an object of word lists by label."""
    path = folder / "emotion_words.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no emotion word list {path}: copy emotion_words.json from the packaged prompts/"
        )
    listed = read_prompt_json(path)
    listed.pop("_comment", None)
    unknown = sorted(set(listed) - set(LABELS))
    if unknown:
        raise PromptFolderError(f"{path} lists words for unknown labels {unknown}: remove them")
    labels_of: dict[str, str] = {}
    for label in LABELS:
        if label != NEUTRAL:
            labels_of[label] = label
        for word in _words(path, label, listed.get(label, [])):
            labels_of.setdefault(word.lower(), label)
    return EmotionLexicon(labels_of=labels_of)


def _words(path: Path, label: str, listed: object) -> list[str]:
    if not isinstance(listed, list) or not all(isinstance(word, str) for word in listed):
        raise PromptFolderError(f"{path}: {label!r} must be a list of words (strings)")
    return listed
