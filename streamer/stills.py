"""Is a folder of images a video (a numbered frame sequence) or unrelated photos?

Rule: a folder is a frame sequence when every file name is one common prefix, a number
and one common extension (``frame_0001.png``, ``frame_0002.png``, ...). Anything else
is a set of unrelated photos: each is anonymized on its own, and nothing (a held box, a
track, a velocity) carries from one image to the next. Within a sequence, an image of
another size is a scene cut (the pipeline treats it as one).
"""

from __future__ import annotations

import re
from pathlib import Path

_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def numbered_sequence(files: list[Path]) -> bool:
    """True when ``files`` (two or more) are ``PREFIX<number>.EXT`` with one prefix and one extension."""
    if len(files) < 2:
        return False
    keys = set()
    for f in files:
        m = _NUMBERED.match(f.stem)
        if m is None:
            return False
        keys.add((m.group(1), f.suffix.lower()))
    return len(keys) == 1
