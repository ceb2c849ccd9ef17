"""Prompt templates: versioned text files with $placeholders, hashed into fingerprints."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, **values: str) -> str:
        # substitute() raises on a missing placeholder: a template and its stage must agree.
        return string.Template(self.text).substitute(values).strip()


def load_template(folder: Path, name: str) -> PromptTemplate:
    path = folder / f"{name}.txt"
    if not path.exists():
        raise FileNotFoundError(f"no prompt template {path}")
    return PromptTemplate(name=name, text=path.read_text(encoding="utf-8"))
