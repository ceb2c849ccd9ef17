"""Credentials out of every text emopillars writes: messages, log lines, run.json,
provenance.json and the card.

A key can reach a URL two ways, as its user info (`https://user:KEY@host/v1`) or as a query
parameter (`?api_key=KEY`, `&sig=...`); both are replaced wherever a URL occurs in a text. In
JSON values, the values of secret-named keys (`api_key`, `hf_token`) are replaced too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"
# Key and parameter names that hold credentials, by their words: `hf_token` and `api_key` do,
# `max_tokens` does not. `*_env` names are exempt: they name the environment variable that
# holds a secret, which is safe and useful to record.
SECRET_WORDS = frozenset(
    {"token", "secret", "password", "passwd", "credential", "credentials", "apikey", "auth"}
)
SECRET_PAIRS = ("api_key", "access_key", "private_key")
# In a URL's query a bare `key` or a signature is a credential too (`?key=`, `&sig=`,
# `X-Amz-Signature=`).
QUERY_WORDS = SECRET_WORDS | {"key", "sig", "signature"}

_USER_INFO = re.compile(r"(?<=://)[^/?#@\s]+@")
_QUERY_PARAMETER = re.compile(r"(?<=[?&;])([\w.~%-]+)=([^&#\s'\"<>)\]]+)")


def is_secret_name(name: str, words: frozenset[str] = SECRET_WORDS) -> bool:
    """Whether a config key (or, with QUERY_WORDS, a URL parameter) names a credential."""
    normal = name.lower().replace("-", "_")
    if normal.endswith("_env"):
        return False
    return bool(words & set(normal.split("_"))) or any(pair in normal for pair in SECRET_PAIRS)


def redact_url(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the credentials of every URL in it replaced (user info, secret query
    parameters), and every occurrence of the given secrets (an API key read from the
    environment)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _USER_INFO.sub(f"{REDACTED}@", text)
    return _QUERY_PARAMETER.sub(_redact_parameter, text)


def _redact_parameter(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    if value == REDACTED or not is_secret_name(name, QUERY_WORDS):
        return match.group(0)
    return f"{name}={REDACTED}"


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON value with credentials replaced: values of secret-named keys,
    credentials in URLs, and any occurrence of the given secrets."""
    secrets = tuple(secrets)
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_name(key) and item is not None else redact(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, secrets) for item in value]
    if isinstance(value, str):
        return redact_url(value, secrets)
    return value


class RedactingFilter(logging.Filter):
    """A handler's filter that redacts URL credentials in each record it formats, whichever
    library logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_url(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_url(record.exc_text)
        return True
