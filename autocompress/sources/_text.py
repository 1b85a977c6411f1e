"""Small text helpers shared by the model and data loaders: plurals, short key lists, one-line error messages.

The CLI prints every error on one line; these helpers shorten exception messages (and torch's multi-line
weights-only advice) to fit.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["_few", "_one_line", "_plural", "_strip_torch_preamble"]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _few(keys: Sequence[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def _one_line(exc: BaseException | str, limit: int = 200) -> str:
    """First line of an exception's message, shortened: the CLI prints errors on one line."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _strip_torch_preamble(exc: BaseException) -> str:
    """torch's weights-only errors open with several lines of advice; the cause is after "WeightsUnpickler error:"."""
    text = str(exc)
    cause = text.split("WeightsUnpickler error:", 1)[-1].strip()
    return cause or text
