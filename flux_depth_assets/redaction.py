"""Every way a secret can show up in a text, so one mask covers them all.

A key reaches logs and tables through other people's messages: h11 prints an illegal header
value escaped (`b'abc\\ndef'`), `repr()` quotes and escapes it, a URL percent-encodes it, a host
echoes half of it. `renderings(secret)` lists those forms (and each whitespace-separated piece
and an identifying prefix of every form); `mask(text, secrets)` replaces them with `***`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MIN_PIECE = 6  # shorter fragments are too common to identify a secret (and to mask safely)
_SPLIT = re.compile(r"[\s\x00-\x1f\x7f]+")


def _prefix_len(n: int) -> int:
    """How many leading characters identify a secret of length `n` (half, at least 8)."""
    return min(n, max(8, n // 2))


def renderings(secret: str | None) -> list[str]:
    """The secret as text, escaped, repr'd, JSON-quoted, percent-encoded, in pieces and as a
    prefix; longest first, so longer forms are masked before their parts."""
    if not secret:
        return []
    forms = {
        secret,
        secret.encode("unicode_escape").decode("ascii", "replace"),
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "replace"))[2:-1],
        json.dumps(secret)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    }
    for form in forms.copy():  # grows while iterating
        forms.update(p for p in _SPLIT.split(form) if len(p) >= MIN_PIECE)
        forms.update(p for p in re.split(r"\\[nrtx0-9a-fA-F]{1,3}", form) if len(p) >= MIN_PIECE)
    for form in forms.copy():
        if len(form) >= MIN_PIECE:
            forms.add(form[: _prefix_len(len(form))])
    return sorted(
        (f for f in forms if len(f) >= min(MIN_PIECE, len(secret))), key=len, reverse=True
    )


def mask(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every rendering of every secret replaced by `***`."""
    forms: set[str] = set()
    for secret in secrets:
        forms.update(renderings(secret))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def unsafe_key_problem(value: str) -> str | None:
    """Why `value` cannot be sent as an HTTP header (whitespace or control characters), or None.
    Never quotes the value."""
    for i, ch in enumerate(value):
        if ch.isspace():
            return f"it contains whitespace at character {i + 1} (e.g. a pasted newline)"
        if ord(ch) < 32 or ord(ch) == 127:
            return f"it contains a control character at character {i + 1}"
        if ord(ch) > 126:
            return f"it contains a non-ASCII character at character {i + 1}"
    return None
