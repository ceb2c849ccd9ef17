"""The 28 GoEmotions labels, their definitions and the off-taxonomy synonym map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emopillars.stages.prompts import PromptFolderError, read_prompt_json

LABELS: tuple[str, ...] = (
    "admiration",
    "amusement",
    "anger",
    "annoyance",
    "approval",
    "caring",
    "confusion",
    "curiosity",
    "desire",
    "disappointment",
    "disapproval",
    "disgust",
    "embarrassment",
    "excitement",
    "fear",
    "gratitude",
    "grief",
    "joy",
    "love",
    "nervousness",
    "optimism",
    "pride",
    "realization",
    "relief",
    "remorse",
    "sadness",
    "surprise",
    "neutral",
)
NEUTRAL = "neutral"
EMOTIONS: tuple[str, ...] = tuple(label for label in LABELS if label != NEUTRAL)
LABEL_IDS: dict[str, int] = {label: index for index, label in enumerate(LABELS)}


@dataclass(frozen=True)
class Taxonomy:
    """Definitions and synonyms of one prompt version; both go into fingerprints."""

    definitions: dict[str, str]
    synonyms: dict[str, str]

    def map_label(self, raw: str) -> str | None:
        """Return the taxonomy label for a model's label, or None when it has no mapping."""
        key = label_key(raw)
        if key in LABEL_IDS:
            return key
        return self.synonyms.get(key)

    def definitions_block(self) -> str:
        return "\n".join(f"- {label}: {self.definitions[label]}" for label in LABELS)


def label_key(raw: str) -> str:
    """A label as the synonym map looks it up: `Happy.`, ` happy` and `HAPPY` are `happy`,
    `very_happy` is `very happy`."""
    return raw.strip().strip(".!\"'").lower().replace("_", " ")


def load_taxonomy(folder: Path) -> Taxonomy:
    """Read definitions.json and synonyms.json of one prompt folder (e.g. prompts/v1);
    PromptFolderError when either is not what the labelling call needs."""
    definitions = _strings(folder / "definitions.json")
    missing = [label for label in LABELS if label not in definitions]
    if missing:
        raise PromptFolderError(
            f"{folder / 'definitions.json'} lacks definitions for {missing}: add them"
        )
    path = folder / "synonyms.json"
    written = _strings(path)
    bad_targets = {source: target for source, target in written.items() if target not in LABEL_IDS}
    if bad_targets:
        raise PromptFolderError(
            f"{path} maps to unknown labels {bad_targets}: map each word to one of the labels "
            "that definitions.json defines"
        )
    return Taxonomy(definitions=definitions, synonyms=_synonyms(path, written))


def _synonyms(path: Path, written: dict[str, str]) -> dict[str, str]:
    """The map by the keys a model's labels are looked up by (`label_key`): a key written
    `Happy` or `very_happy` would otherwise never match. A key that is a label itself, or
    two keys that look up alike but map apart, would never do what they say: refused."""
    synonyms: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for source, target in written.items():
        key = label_key(source)
        if key in LABEL_IDS or not key:
            what = "is a label itself" if key else "is empty"
            raise PromptFolderError(
                f"{path}: the key {source!r} {what}, so it can never be looked up: remove it"
            )
        if synonyms.get(key, target) != target:
            raise PromptFolderError(
                f"{path}: {spelled[key]!r} and {source!r} are the same word to the lookup "
                f"(case, `_` and end punctuation aside) but map to {synonyms[key]!r} and "
                f"{target!r}: keep one"
            )
        synonyms[key], spelled[key] = target, source
    return synonyms


def _strings(path: Path) -> dict[str, str]:
    """A JSON object of strings (its `_comment` left out)."""
    read = read_prompt_json(path)
    read.pop("_comment", None)
    not_text = sorted(key for key, value in read.items() if not isinstance(value, str))
    if not_text:
        raise PromptFolderError(f"{path}: the values of {not_text} must be strings")
    return {key: str(value) for key, value in read.items()}
