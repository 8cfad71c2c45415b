"""Path safety: an output, a temporary file or a report never lands on the input.

Paths are compared by their real location (symlinks resolved, and by inode when both
exist, so hard links count too), and a temporary file is always a new file created
exclusively: a file that merely has the temporary name (say, an input called
``clip.partial.mp4``) is never opened for writing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import OutputError

URL_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "srt://", "udp://", "http://", "https://", "webcam:")


def is_local(uri: str | Path | None) -> bool:
    return uri is not None and not str(uri).startswith(URL_PREFIXES) and "://" not in str(uri)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (or folder), existing or not."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def partial_path(path: Path) -> Path:
    """The usual temporary name of an output: ``NAME.partial.EXT``."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def claim_partial(path: Path) -> Path:
    """Create a new, empty temporary file beside ``path`` and return its name.

    ``NAME.partial.EXT`` when that name is free, else ``NAME.partial-XXXXXX.EXT``: the
    file is created with O_EXCL, so whatever already has the name (an input, an earlier
    run's partial file) is left alone.
    """
    candidates = [partial_path(path)] + [path.with_name(f"{path.stem}.partial-{secrets.token_hex(3)}{path.suffix}") for _ in range(20)]
    for candidate in candidates:
        try:
            fd = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"{path}: cannot create {candidate.name} ({exc.strerror})") from None
        os.close(fd)
        return candidate
    raise OutputError(f"{path}: cannot find a free temporary name beside it")


def check_paths(input_uri: str, output: str | None, report: str | None) -> None:
    """Refuse, before any work, an output or report that would replace the input (or
    each other), and a report that cannot be written (missing folder, a folder's name)."""
    local_input = input_uri if is_local(input_uri) else None
    if output is not None and is_local(output) and local_input is not None:
        if same_file(output, local_input):
            raise OutputError(f"{output}: output would overwrite the input")
    if report is None:
        return
    path = Path(report)
    if path.is_dir():
        raise OutputError(f"{report}: report path is a folder")
    if local_input is not None and same_file(path, local_input):
        raise OutputError(f"{report}: report would overwrite the input")
    if output is not None and is_local(output) and (same_file(path, output) or same_file(path, partial_path(Path(output)))):
        raise OutputError(f"{report}: report and output are the same file")
    folder = path.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise OutputError(f"{report}: report folder is missing or not writable")
