"""Where each input's output goes, checked before anything heavy is imported or loaded,
and path safety: an output, a temporary file or a report never lands on the input.

Only the standard library here: ``camstream run`` calls this before it imports the
pipeline (PyAV, OpenCV, supervision) or builds a model, so that a missing input, a
missing webcam or an output that would be overwritten is reported at once.

Paths are compared by their real location (symlinks resolved, and by inode when both
exist, so hard links count too), and a temporary file is always a new file created
exclusively: a file that merely has the temporary name (say, an input called
``clip.partial.mp4``) is never opened for writing.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, InputError, OutputError, StreamError

# Kept in step with sources.IMAGE_SUFFIXES / STREAM_SCHEMES and muxing.CONTAINERS
# (tests/test_cli_inputs.py checks): those modules import PyAV.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "srt://", "udp://", "http://", "https://")
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi"}


def input_kind(uri: str) -> str:
    """``stream``, ``webcam``, ``images`` (a folder), ``image`` or ``file`` (a video), from the name alone."""
    if uri.startswith(STREAM_SCHEMES):
        return "stream"
    if uri.startswith("webcam:"):
        return "webcam"
    path = Path(uri)
    if path.is_dir():
        return "images"
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return "file"


def default_output(input_uri: str, kind: str) -> str:
    """``NAME.anonymized.mp4`` beside a video, ``NAME.anonymized.jpg`` beside an image,
    ``DIR.anonymized`` beside a folder, ``HOST-TIME.anonymized.mkv`` here for a stream."""
    if kind in ("stream", "webcam"):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = "webcam" if kind == "webcam" else (input_uri.split("://", 1)[1].split("/")[0].split("@")[-1].replace(":", "_") or "stream")
        return f"{name}-{stamp}.anonymized.mkv"
    path = Path(input_uri)
    if kind == "images":
        return str(path.with_name(path.name + ".anonymized"))
    if kind == "image":
        return str(path.with_name(f"{path.stem}.anonymized{path.suffix}"))
    return str(path.with_name(f"{path.stem}.anonymized.mp4"))


def check_input(uri: str) -> None:
    """The cheap checks: the file or folder exists and is not empty; the webcam device
    exists. Whether FFmpeg can decode it is found when the source opens."""
    kind = input_kind(uri)
    if kind == "stream":
        return
    if kind == "webcam":
        device = uri.split(":", 1)[1] or "0"
        if not device.isdigit() and not device.startswith("/dev/"):
            raise ConfigError(f"{uri}: expected webcam:N (a number) or webcam:/dev/videoN")
        path = f"/dev/video{device}" if device.isdigit() else device
        if not os.path.exists(path):
            raise StreamError(f"{uri}: cannot connect (no such device {path})")
        return
    path = Path(uri)
    if not path.exists():
        raise InputError(f"{uri}: no such file or folder")
    if not os.access(path, os.R_OK):
        raise InputError(f"{uri}: not readable (permission denied)")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{uri}: file is empty (0 bytes)")


def folder_images(folder: Path) -> list[Path]:
    """The images a folder input holds, in the order they are processed (by name)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass
class Job:
    """One input and where its output (and report) go."""

    input: str
    output: str
    kind: str
    report: str | None = None
    folder: str | None = None  # -o named a folder to hold the output: created when the job runs


def _as_folder(output: str, kind: str, many: bool) -> bool:
    """Whether ``-o`` names a folder to put the output(s) in."""
    if output.startswith(("rtsp://", "rtsps://")):
        return False
    path = Path(output)
    if many:
        return True
    if kind == "images":
        return False  # a folder input's -o IS its output folder
    if output.endswith(("/", os.sep)) or path.is_dir():
        return True
    # An image written to 'newfolder' (no suffix) means a folder, not a video without a type.
    return kind == "image" and not path.suffix


def plan(inputs: list[str], output: str | None, report: str | None = None) -> list[Job]:
    """One :class:`Job` per input. Many inputs need ``-o`` to be a folder (or none:
    each output beside its input); two inputs may not share an output."""
    many = len(inputs) > 1
    if many and output and output.startswith(("rtsp://", "rtsps://")):
        raise ConfigError("-o rtsp://... takes one input")
    jobs = []
    for uri in inputs:
        kind = input_kind(uri)
        name = default_output(uri, kind)
        if output is None:
            target = name
        elif _as_folder(output, kind, many):
            target = str(Path(output) / Path(name).name)
        else:
            target = output
        jobs.append(Job(uri, target, kind, folder=output if output and target != output else None))
    seen: dict[str, str] = {}
    for job in jobs:
        if job.output.startswith(("rtsp://", "rtsps://")):
            continue
        key = os.path.abspath(job.output)
        if key in seen:
            raise ConfigError(f"{seen[key]} and {job.input} would both be written to {job.output}")
        seen[key] = job.input
    if report:
        if many:
            # --report DIR: one report per input, named after its output.
            for job in jobs:
                job.report = str(Path(report) / f"{Path(job.output).name}.report.json")
        else:
            jobs[0].report = report
    return jobs


def check_output(job: Job, overwrite: bool) -> None:
    """Refuses to write over the input (ever) or over an existing output (unless ``overwrite``)."""
    if job.output.startswith(("rtsp://", "rtsps://")):
        return
    if job.folder and not Path(job.folder).is_dir():
        parent = Path(job.folder).resolve().parent
        if not parent.is_dir():
            raise OutputError(f"{job.folder}: cannot create the output folder ({parent} does not exist)")
        if Path(job.folder).exists():
            raise OutputError(f"{job.folder}: not a folder")
    target = Path(job.output)
    if job.kind not in ("stream", "webcam"):
        source = Path(job.input)
        if same_file(target, source):
            raise OutputError(f"{target}: output would overwrite the input")
    if overwrite:
        return
    if job.kind == "images" and target.is_dir():
        taken = [p.name for p in folder_images(Path(job.input)) if (target / p.name).exists()]
        if taken:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise OutputError(f"{target / taken[0]}{more} already exist(s); add --overwrite to replace")
    elif target.exists() and not target.is_dir():
        raise OutputError(f"{target} already exists; add --overwrite to replace it")



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
