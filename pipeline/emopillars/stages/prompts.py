"""Prompt templates: versioned text files with $placeholders, hashed into fingerprints."""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from functools import cached_property
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
        # The split form renders the same text (KeyError on the first missing placeholder
        # too) with a join instead of a regex substitution per call.
        split = self._split
        if split is None:
            return string.Template(self.text).substitute(values).strip()
        literals, names = split
        pieces = [literals[0]]
        for name, literal in zip(names, literals[1:], strict=True):
            pieces.append(str(values[name]))
            pieces.append(literal)
        return "".join(pieces).strip()

    @cached_property
    def _split(self) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The text between placeholders (`$$` made `$`) and the placeholders' names, as
        string.Template reads them; None when the text has an invalid `$` (substitute
        raises ValueError, and render lets it)."""
        literals, names, literal, position = [], [], "", 0
        for match in string.Template.pattern.finditer(self.text):
            if match.group("invalid") is not None:
                return None
            literal += self.text[position : match.start()]
            position = match.end()
            if match.group("escaped") is not None:
                literal += string.Template.delimiter
                continue
            literals.append(literal)
            names.append(match.group("named") or match.group("braced"))
            literal = ""
        literals.append(literal + self.text[position:])
        return tuple(literals), tuple(names)


def load_template(folder: Path, name: str) -> PromptTemplate:
    path = folder / f"{name}.txt"
    if not path.exists():
        raise FileNotFoundError(f"no prompt template {path}")
    return PromptTemplate(name=name, text=path.read_text(encoding="utf-8"))
