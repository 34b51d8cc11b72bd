"""Credentials never reach a span or the store.

unitcost records no request headers, URLs or client options, so an API key has one way onto a span:
the text of an exception (a proxy that echoes the ``Authorization`` header back, a URL with
``?key=...`` in a connection error, a user's own error message). Every exception message unitcost
puts on a span (its status description) goes through `scrub` first.

Example::

    >>> scrub("401: Incorrect API key provided: sk-proj-abcdefghijklmnop1234")
    '401: Incorrect API key provided: [redacted]'
"""

from __future__ import annotations

import re

__all__ = ["scrub"]

REDACTED = "[redacted]"

_PATTERNS = re.compile(
    "|".join(
        (
            r"\bsk-[A-Za-z0-9_\-]{8,}",  # OpenAI (sk-, sk-proj-) and Anthropic (sk-ant-) keys
            r"\bAIza[0-9A-Za-z_\-]{20,}",  # Google API keys
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
            r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub tokens
            r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack tokens
            r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]*",  # JWTs
            r"\b(?:org|proj)-[A-Za-z0-9]{16,}",  # OpenAI organization and project ids
        )
    )
)
# "Bearer xyz" / "Basic xyz", then "api_key=xyz", "x-api-key: xyz", "Authorization: xyz", "password=xyz"
_VALUE = r"(?!\[redacted\])[^\s\"'&,;)}\]]{4,}"
_SCHEME = re.compile(r"(?i)(\b(?:bearer|basic)\s+)" + _VALUE)
_LABELLED = re.compile(
    r"(?i)(\b(?:authorization|proxy-authorization|x-api-key|api[_\-]?key|access[_\-]?token|auth[_\-]?token|"
    r"client[_\-]?secret|secret|password|passwd|token)[\"']?\s*[:=]\s*[\"']?)" + _VALUE
)

# A long token (base64 or hex, 16+ characters) after a word that names a credential, in any shape:
# "key dXNlcjpwYXNz...", "token 'abc...'", "credentials=...", "Basic: ...".
_GENERIC = re.compile(
    r"(?i)(\b(?:[a-z_\-]*key|[a-z_\-]*token|secret|credentials?|bearer|basic|authorization|auth)s?\b"
    r"[\"']?[\s:=]{1,3}[\"']?)(?!\[redacted\])[A-Za-z0-9+/_\-]{16,}={0,2}"
)

# A credential in a URL's query string: ?key=..., &sig=... (Gemini keys, pre-signed URLs).
_QUERY = re.compile(r"(?i)([?&](?:key|api[_\-]?key|code|sig|signature|token|access[_\-]?token)=)[^&#\s\"']+")


def scrub(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``[redacted]``."""
    if not text:
        return text
    text = _PATTERNS.sub(REDACTED, text)
    text = _SCHEME.sub(lambda m: m.group(1) + REDACTED, text)
    text = _QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    text = _GENERIC.sub(lambda m: m.group(1) + REDACTED, text)
    return _LABELLED.sub(lambda m: m.group(1) + REDACTED, text)
