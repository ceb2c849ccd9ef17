"""A template renders to pieces whose join is exactly what string.Template renders, stripped:
request keys hash the pieces, so any difference would change every key."""

from __future__ import annotations

import string

import pytest
from emopillars.stages.prompts import PromptTemplate

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
    ],
)
def test_pieces_join_to_the_substituted_and_stripped_text(text: str) -> None:
    template = PromptTemplate("t", text)
    expected = string.Template(text).substitute(VALUES).strip()
    assert "".join(template.pieces(VALUES)) == expected
    assert template.render(**VALUES) == expected


def test_a_missing_value_and_an_invalid_dollar_fail_as_substitute_does() -> None:
    with pytest.raises(KeyError):
        PromptTemplate("t", "Hi $name and $other").pieces({"name": "x"})
    with pytest.raises(ValueError):
        PromptTemplate("t", "costs $5").pieces({})
