"""Counts in messages: ``1 frame``, ``0 tracks``."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``plural(1, "frame") == "1 frame"``, ``plural(0, "track") == "0 tracks"``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
