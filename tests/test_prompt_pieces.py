"""A template renders to pieces whose join is exactly what string.Template renders, stripped:
request keys hash the pieces, so any difference would change every key."""

from __future__ import annotations

import string

import pytest
from emopillars.stages.prompts import PromptTemplate, _stripped

VALUES = {"story": "  A story\nwith lines.  ", "name": "Anna", "empty": "", "blank": " \n\t"}


@pytest.mark.parametrize(
    "text",
    [
        "Story: $story\nWho is $name?\n",
        "$story",
        "$blank$empty$story$blank",
        "\n\n$empty  $name  $blank\n",
        "Costs $$5 for ${name}; $empty",
        "   ",
        "no placeholders\n",
        "$blank",
        "  Lead: $story, then $blank end.  ",
        "Lead $story$name",
        "\n$name tail\n",
    ],
)
def test_pieces_join_to_the_substituted_and_stripped_text(text: str) -> None:
    template = PromptTemplate("t", text)
    expected = string.Template(text).substitute(VALUES).strip()
    assert "".join(template.pieces(VALUES)) == expected
    assert template.pieces(VALUES) == _stripped_per_prompt(template)
    assert template.render(**VALUES) == expected


def test_a_missing_value_and_an_invalid_dollar_fail_as_substitute_does() -> None:
    with pytest.raises(KeyError):
        PromptTemplate("t", "Hi $name and $other").pieces({"name": "x"})
    with pytest.raises(ValueError):
        PromptTemplate("t", "costs $5").pieces({})


def _stripped_per_prompt(template: PromptTemplate) -> list[str]:
    """The pieces as they were made before the template's ends were stripped once."""
    split = template._split
    if split is None:
        return [string.Template(template.text).substitute(VALUES).strip()]
    literals, names = split
    pieces = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        pieces += [str(VALUES[name]), literal]
    return _stripped(pieces)
