"""Token counts for calls whose provider reported none (a stream without its usage chunk).

Without the text's tokenizer at hand, unitcost counts one token per four characters, the rule of
thumb OpenAI documents for English text, plus a few tokens of overhead per message. Every count
made here is marked estimated, in the store and in every report.
"""

from __future__ import annotations

from typing import Any

from ._usage import TokenUsage

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # role and separators around each chat message


def _chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return sum(_chars(part.get("text", "")) for part in content if isinstance(part, dict))
    return 0


def messages_chars(messages: Any) -> tuple[int, int]:
    """(characters of text, number of messages) in a chat request's messages."""
    count = chars = 0
    try:
        for message in messages or ():
            count += 1
            if isinstance(message, dict):
                chars += _chars(message.get("content"))
    except TypeError:
        pass
    return chars, count


def estimate_usage(input_chars: int, input_messages: int, output_chars: int) -> TokenUsage:
    def tokens(chars: int) -> int:
        return -(-chars // CHARS_PER_TOKEN)

    return TokenUsage(
        input_tokens=tokens(input_chars) + TOKENS_PER_MESSAGE * input_messages,
        output_tokens=tokens(output_chars),
        estimated=True,
    )
