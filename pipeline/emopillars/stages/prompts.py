"""Prompt templates: versioned text files with $placeholders, hashed into fingerprints.

A prompt folder may be a user's own (`prompts_dir`): its files are read through here and
checked when the run loads them, so that a mistake in one is a one-line PromptFolderError
naming the file before any stage runs, not a traceback half-way through a run."""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from emopillars.config import ConfigError

_FIX = "fix it in your prompt folder (the packaged prompts/ shows the expected form)"


class PromptFolderError(ConfigError):
    """A file of a prompt folder that a user must fix; the message names the file."""


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
    def placeholders(self) -> frozenset[str]:
        """The names of the template's placeholders (empty when the text has an invalid `$`)."""
        return frozenset(self._split[1]) if self._split is not None else frozenset()

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


def load_template(folder: Path, name: str, placeholders: frozenset[str] | None) -> PromptTemplate:
    """Read `<name>.txt` of a prompt folder; PromptFolderError unless it is non-empty UTF-8
    text whose `$`s are `$$` or start one of `placeholders`: the names its step provides (a
    template may leave any out), or None where the step declares none (then a name the step
    lacks fails when a prompt is rendered)."""
    path = folder / f"{name}.txt"
    template = PromptTemplate(name=name, text=read_prompt_file(path))
    if not template.text.strip():
        raise PromptFolderError(f"{path} is empty: write the {name} prompt in it")
    _check_dollars(path, template.text)
    if placeholders is None:
        return template
    unknown = sorted(template.placeholders - placeholders)
    if unknown:
        raise PromptFolderError(
            f"{path} uses unknown placeholders {_listed(unknown)}: the {name} prompt may use "
            f"{_listed(sorted(placeholders))} (write $$ for a literal $)"
        )
    return template


def _check_dollars(path: Path, text: str) -> None:
    """Rendering would raise ValueError on the first prompt (string.Template's invalid `$`):
    say so now, with the line."""
    for match in string.Template.pattern.finditer(text):
        if match.group("invalid") is not None:
            line = text.count("\n", 0, match.start()) + 1
            raise PromptFolderError(
                f"{path} line {line}: a $ that starts no placeholder: write $name or "
                "${name} for a placeholder, $$ for a literal $"
            )


def _listed(names: list[str]) -> str:
    return ", ".join(f"${name}" for name in names) if names else "no placeholders"


def read_prompt_file(path: Path) -> str:
    """The text of a prompt folder's file; PromptFolderError when it is missing or not UTF-8."""
    if not path.is_file():
        raise PromptFolderError(
            f"no {path}: every prompt folder needs it; copy it from the packaged prompts/"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise PromptFolderError(
            f"{path} is not UTF-8 text (byte {error.start}): save it as UTF-8"
        ) from None


def read_prompt_json(path: Path) -> dict[str, object]:
    """The JSON object of a prompt folder's file; PromptFolderError when it is missing, not
    JSON or not an object."""
    try:
        value = json.loads(read_prompt_file(path))
    except json.JSONDecodeError as error:
        raise PromptFolderError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: "
            f"{error.msg}): {_FIX}"
        ) from None
    if not isinstance(value, dict):
        raise PromptFolderError(f"{path} must hold a JSON object: {_FIX}")
    return value
