"""Words of text, and the emotion words among them (prompts/<version>/emotion_words.json).

Shared by the quality gates, which keep contexts and rewrites from naming emotions, and by the
quality report, which measures how often they still do."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from emopillars.stages.taxonomy import LABELS, NEUTRAL

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def words(text: str) -> list[str]:
    """The words of a text, lowercased: runs of letters, with inner apostrophes."""
    return list(word_tuple(text))


@lru_cache(maxsize=4096)
def word_tuple(text: str) -> tuple[str, ...]:
    """`words` of a text, cached: the gates split the same story, utterance or context again
    and again (each pair of a story's utterances, a rewrite against its original)."""
    if text.isascii():
        # Lowercasing ASCII maps letters to letters one for one, so splitting the lowercased
        # text finds the same words, lowercased; no ’ to replace.
        return tuple(_WORD.findall(text.lower()))
    return tuple(word.lower().replace("’", "'") for word in _WORD.findall(text))


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
    """Read emotion_words.json of one prompt folder (e.g. prompts/v1)."""
    path = folder / "emotion_words.json"
    if not path.exists():
        raise FileNotFoundError(f"no emotion word list {path}")
    listed: dict[str, list[str]] = json.loads(path.read_text(encoding="utf-8"))
    listed.pop("_comment", None)
    unknown = sorted(set(listed) - set(LABELS))
    if unknown:
        raise ValueError(f"{path} lists words for unknown labels {unknown}")
    labels_of: dict[str, str] = {}
    for label in LABELS:
        if label != NEUTRAL:
            labels_of[label] = label
        for word in listed.get(label, []):
            labels_of.setdefault(word.lower(), label)
    return EmotionLexicon(labels_of=labels_of)
