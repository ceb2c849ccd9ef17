"""The 28 GoEmotions labels, their definitions and the off-taxonomy synonym map."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
        key = raw.strip().strip(".!\"'").lower().replace("_", " ")
        if key in LABEL_IDS:
            return key
        return self.synonyms.get(key)

    def definitions_block(self) -> str:
        return "\n".join(f"- {label}: {self.definitions[label]}" for label in LABELS)


def load_taxonomy(folder: Path) -> Taxonomy:
    """Read definitions.json and synonyms.json of one prompt folder (e.g. prompts/v1)."""
    definitions = json.loads((folder / "definitions.json").read_text(encoding="utf-8"))
    synonyms = json.loads((folder / "synonyms.json").read_text(encoding="utf-8"))
    synonyms.pop("_comment", None)
    missing = set(LABELS) - set(definitions)
    if missing:
        raise ValueError(f"{folder}/definitions.json lacks definitions for {sorted(missing)}")
    bad_targets = {source: target for source, target in synonyms.items() if target not in LABEL_IDS}
    if bad_targets:
        raise ValueError(f"{folder}/synonyms.json maps to unknown labels: {bad_targets}")
    return Taxonomy(definitions=definitions, synonyms=synonyms)
