"""Prompt templates: versioned text files with $placeholders, hashed into fingerprints."""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
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
        return "".join(self.pieces(values))

    def pieces(self, values: Mapping[str, object]) -> list[str]:
        """The rendered prompt as the template's text and the values between: joined, they
        are the prompt (stripped as a whole). Request keys hash them piece by piece, so the
        pieces that recur (the template's text, a story) are serialised once."""
        # substitute() raises on a missing placeholder: a template and its stage must agree.
        # The split form renders the same text (KeyError on the first missing placeholder
        # too) without a regex substitution per call.
        split = self._split
        if split is None:
            return [string.Template(self.text).substitute(values).strip()]
        literals, names = split
        # Where the template's text has more than whitespace before its first placeholder and
        # after its last, the prompt's ends are those literals' ends, stripped once here.
        literals, strip = self._stripped_ends or (literals, True)
        pieces = [literals[0]]
        for name, literal in zip(names, literals[1:], strict=True):
            pieces.append(str(values[name]))
            pieces.append(literal)
        return _stripped(pieces) if strip else pieces

    @cached_property
    def _stripped_ends(self) -> tuple[tuple[str, ...], bool] | None:
        """The literals with the first one's start and the last one's end stripped, when
        both keep more than whitespace; None otherwise (the values' ends are then the
        prompt's, stripped per prompt)."""
        if self._split is None:
            return None
        literals = list(self._split[0])
        if len(literals) < 2:
            return None
        literals[0], literals[-1] = literals[0].lstrip(), literals[-1].rstrip()
        if not literals[0] or not literals[-1]:
            return None
        return tuple(literals), False

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


def _stripped(pieces: list[str]) -> list[str]:
    """The pieces with the whitespace that `"".join(pieces).strip()` removes removed: from
    the first pieces and the last ones, however many it spans."""
    for index, piece in enumerate(pieces):
        pieces[index] = piece.lstrip()
        if pieces[index]:
            break
    for index in range(len(pieces) - 1, -1, -1):
        pieces[index] = pieces[index].rstrip()
        if pieces[index]:
            break
    return pieces


def load_template(folder: Path, name: str) -> PromptTemplate:
    path = folder / f"{name}.txt"
    if not path.exists():
        raise FileNotFoundError(f"no prompt template {path}")
    return PromptTemplate(name=name, text=path.read_text(encoding="utf-8"))
