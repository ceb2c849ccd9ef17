"""How an error from a library is quoted in a one-line message."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The error's first line, or its type's name when it says nothing: library errors often
    go on for lines (a traceback of their own, a link), and a message here is one line."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
