"""Where each input's output goes, checked before anything heavy is imported or loaded,
and path safety: an output, a temporary file or a report never lands on the input.

Only the standard library here: ``camstream run`` calls this before it imports the
pipeline (PyAV, OpenCV, supervision) or builds a model, so that a missing input, a
missing webcam or an output that would be overwritten is reported at once.

Paths are compared by their real location (symlinks resolved, and by inode when both
exist, so hard links count too), and a temporary file is always a new file created
exclusively: a file that merely has the temporary name (say, an input called
``clip.partial.mp4``) is never opened for writing.

One rule for every path a user names or a run derives (output, report, preview, batch
summary), in single runs, batches and on Ray (:func:`check_target`): it is never an input
of the run (any of them, ``--overwrite`` or not), and never an existing file unless
``--overwrite``. Nothing is written in place: a file is written under a new name and
moved onto its final name (:func:`publish`), without ``--overwrite`` only if that name is
still free (a hard link, which fails when the name exists: a second writer that raced
the first is refused, never silently replaced). Two runs writing one output at once are
refused by a lock on the final name (:func:`claim`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, InputError, OutputError, StreamError

# Kept in step with sources.IMAGE_SUFFIXES / STREAM_SCHEMES and muxing.CONTAINERS
# (tests/test_cli_inputs.py checks): those modules import PyAV.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".heif"}
READ_ONLY_IMAGE_SUFFIXES = {".heic", ".heif"}  # read (pillow-heif), never written: their outputs are JPEG
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
    return str(path.with_name(output_name(path.name, kind)))


NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, APFS, NTFS in UTF-16 units)
ROOM = len(".partial-XXXXXX") + len(".report.json")  # what temporary and report names add to an output's


def fit_name(stem: str, tail: str) -> str:
    """``stem + tail``, the stem shortened (whole UTF-8 characters, plus a hash of the full
    stem so that two long names stay two names) when the result, with room for the
    temporary and report names made from it, would pass the file system's limit (an input
    of 246+ characters failed with "File name too long")."""
    limit = NAME_MAX - ROOM - len(tail.encode())
    if len(stem.encode()) <= limit:
        return stem + tail
    digest = "~" + hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    cut = stem.encode("utf-8", "surrogateescape")[: limit - len(digest)].decode("utf-8", "ignore")
    return cut + digest + tail


def output_name(name: str, kind: str) -> str:
    """The output's file name for an input file name: ``NAME.anonymized.mp4`` (a video),
    ``NAME.anonymized.EXT`` (an image; HEIC/HEIF are written as JPEG), ``NAME.anonymized``
    (a folder of images); long names shortened (:func:`fit_name`)."""
    if kind == "images":
        return fit_name(name, ".anonymized")
    path = Path(name)
    if kind == "image":
        suffix = ".jpg" if path.suffix.lower() in READ_ONLY_IMAGE_SUFFIXES else path.suffix
        return fit_name(path.stem, f".anonymized{suffix}")
    return fit_name(path.stem, ".anonymized.mp4")


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
    each output beside its input); no two paths the run writes may be one file."""
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
        if kind != "image" and is_local(target) and Path(target).suffix.lower() in IMAGE_SUFFIXES:
            # one picture would keep one frame (the last) of many: refused, not cut short
            what = {"file": "a video", "images": "a folder of images"}.get(kind, "a live stream")
            raise ConfigError(f"{target}: an image cannot hold {what} ({uri} has many frames); use a video name "
                              f"({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder")
        jobs.append(Job(uri, target, kind, folder=output if output and target != output else None))
    if report:
        if many:
            # --report DIR: one report per input, named after its output.
            for job in jobs:
                job.report = str(Path(report) / f"{Path(job.output).name}.report.json")
        else:
            jobs[0].report = report
    check_distinct([(job.input, job.output) for job in jobs])  # a report on an output: check_output (exit 4)
    return jobs


def check_distinct(targets: Sequence[tuple[str, str | None]]) -> None:
    """No two paths a run writes are one file (by real path: a link or ``a/../a`` counts)."""
    seen: dict[str, str] = {}
    for what, path in targets:
        if path is None or not is_local(path):
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise ConfigError(f"{seen[key]} and {what} would both be written to {path}")
        seen[key] = what


def check_target(path: str | Path, what: str, inputs: Sequence[str], overwrite: bool, *, folder_ok: bool = False) -> None:
    """The one rule for a path a run writes (output, report, preview, summary): never any
    input of the run, ``--overwrite`` or not (real paths: symlinks and hard links count),
    and never an existing file unless ``overwrite``. A folder there is refused unless
    ``folder_ok`` (a folder of images written into)."""
    if not is_local(path):
        return
    for uri in inputs:
        if is_local(uri) and same_file(path, uri):
            raise OutputError(f"{path}: {what} would overwrite the input" + ("" if len(inputs) == 1 else f" {uri}"))
    target = Path(path)
    if target.is_dir():
        if folder_ok:
            return
        raise OutputError(f"{path}: {what} path is a folder")
    if not overwrite and os.path.lexists(target):  # lexists: a dangling link is not followed, nor replaced
        raise OutputError(f"{path} already exists; add --overwrite to replace it")


def check_output(job: Job, overwrite: bool, inputs: Sequence[str] | None = None) -> None:
    """Refuses to write over any input (ever) or over an existing output or report (unless
    ``overwrite``); ``inputs``: every input of the run (default: the job's own)."""
    inputs = list(inputs) if inputs is not None else [job.input]
    if job.output.startswith(("rtsp://", "rtsps://")):
        if job.report:
            check_target(job.report, "report", inputs, overwrite)
        return
    if job.folder and not Path(job.folder).is_dir():
        parent = Path(job.folder).resolve().parent
        if not parent.is_dir():
            raise OutputError(f"{job.folder}: cannot create the output folder ({parent} does not exist)")
        if Path(job.folder).exists():
            raise OutputError(f"{job.folder}: not a folder")
    target = Path(job.output)
    for uri in inputs:  # an image folder written into: none of its images may be an input either
        if is_local(uri) and same_file(target, uri):
            raise OutputError(f"{target}: output would overwrite the input" + ("" if len(inputs) == 1 else f" {uri}"))
    if job.kind == "images" and target.is_dir():
        names = [p.name for p in folder_images(Path(job.input))]
        for name in names:
            check_target(target / name, "output", inputs, True)
        taken = [n for n in names if os.path.lexists(target / n)]
        if taken and not overwrite:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise OutputError(f"{target / taken[0]}{more} already exist(s); add --overwrite to replace")
    elif not target.is_dir():
        check_target(target, "output", inputs, overwrite)
    if job.report:
        check_target(job.report, "report", inputs, overwrite)
        if is_local(job.output) and (same_file(job.report, job.output) or same_file(job.report, partial_path(target))):
            raise OutputError(f"{job.report}: report and output are the same file")


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


def _beside(path: Path, tail: str) -> Path:
    """``STEM + tail + EXT`` beside ``path``, the stem shortened (:func:`fit_name`) only when
    the name would pass the file system's limit: an image of a folder keeps its own name,
    up to 255 bytes, so its temporary name can be longer than any name allowed."""
    name = f"{path.stem}{tail}{path.suffix}"
    if len(name.encode("utf-8", "surrogateescape")) <= NAME_MAX:
        return path.with_name(name)
    return path.with_name(fit_name(path.stem, tail + path.suffix))


def partial_path(path: Path) -> Path:
    """The usual temporary name of an output: ``NAME.partial.EXT``."""
    return _beside(path, ".partial")


def claim_partial(path: Path) -> Path:
    """Create a new, empty temporary file beside ``path`` and return its name.

    ``NAME.partial.EXT`` when that name is free, else ``NAME.partial-XXXXXX.EXT``: the
    file is created with O_EXCL, so whatever already has the name (an input, an earlier
    run's partial file) is left alone.
    """
    candidates = [partial_path(path)] + [_beside(path, f".partial-{secrets.token_hex(3)}") for _ in range(20)]
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


def check_paths(input_uri: str, output: str | None, report: str | None, *, overwrite: bool = False,
                inputs: Sequence[str] | None = None) -> None:
    """Refuse, before any work, an output or report that would replace an input (or each
    other, or an existing file without ``overwrite``), and a report that cannot be written
    (missing folder, a folder's name). ``inputs``: every input of the run (a batch's too)."""
    inputs = list(inputs) if inputs is not None else [input_uri]
    if input_uri not in inputs:
        inputs.append(input_uri)
    if output is not None and is_local(output):
        for uri in inputs:
            if is_local(uri) and same_file(output, uri):
                raise OutputError(f"{output}: output would overwrite the input" + ("" if len(inputs) == 1 else f" {uri}"))
    if report is None:
        return
    path = Path(report)
    if path.is_dir():
        raise OutputError(f"{report}: report path is a folder")
    if output is not None and is_local(output) and (same_file(path, output) or same_file(path, partial_path(Path(output)))):
        raise OutputError(f"{report}: report and output are the same file")
    check_target(path, "report", inputs, overwrite)
    folder = path.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise OutputError(f"{report}: report folder is missing or not writable")


def publish(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move a finished file from its temporary name onto its final one. Without
    ``overwrite`` only while the final name is free: a hard link is created (which fails if
    the name exists, atomically) and the temporary name removed, so a file that appeared
    meanwhile (another run, another program) is never replaced."""
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise OutputError(f"{final} appeared while this run was writing it; left untouched (this run's result is "
                          f"in {tmp}; add --overwrite to replace)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(final):  # no hard links on this file system: check, then rename
            raise OutputError(f"{final} appeared while this run was writing it; left untouched (this run's result is "
                              f"in {tmp}; add --overwrite to replace)") from None
        os.replace(tmp, final)
        return
    os.unlink(tmp)


def write_text(path: str | Path, text: str, overwrite: bool) -> None:
    """A small file (a report, a summary) written to a new temporary file and published:
    never written in place (through a link to a video, it once truncated the video)."""
    final = Path(path)
    tmp = claim_partial(final)
    try:
        tmp.write_text(text)
        publish(tmp, final, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


LOCK_PREFIX = ".camstream-lock."


@contextmanager
def claim(paths: Sequence[str | Path | None]) -> Iterator[None]:
    """Hold an exclusive lock on each local path's final name while a run writes it: a
    second run writing the same output is refused at its start (exit 4) instead of the two
    replacing each other. The lock is ``flock`` on a hidden file beside the target
    (``.camstream-lock.NAME``), removed when released; the kernel drops the lock of a
    process that dies, so a left-over file never blocks a later run."""
    with ExitStack() as stack:
        for path in paths:
            if path is not None and is_local(path):
                stack.enter_context(_lock(Path(path)))
        yield


def _lock_file(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    name = LOCK_PREFIX + path.name
    if len(name.encode()) > NAME_MAX:
        name = LOCK_PREFIX + hashlib.sha256(path.name.encode("utf-8", "surrogateescape")).hexdigest()
    return folder / name


def clear_stale_locks(paths: Sequence[str | Path | None]) -> None:
    """Remove the lock files of ``paths`` that no process holds: those of a run that was
    killed (a Ray worker killed when its batch is stopped leaves them beside the outputs)."""
    for path in paths:
        if path is None or not is_local(path):
            continue
        lock = _lock_file(Path(path))
        try:
            fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            continue  # none (or not ours to open)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino:
                os.unlink(lock)
        except OSError:
            pass  # held: a run is writing it
        finally:
            os.close(fd)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        yield  # the folder is created later (or the run fails on it): nothing to race for yet
        return
    lock = _lock_file(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EROFS, errno.ELOOP):
                yield  # a folder we cannot write: the output check reports it
                return
            raise OutputError(f"{path}: cannot lock ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputError(f"{path}: another camstream run is writing it; wait for it to finish") from None
        try:  # the file locked must still be the one at that name (a releasing run may have removed it)
            if os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        finally:
            os.close(fd)
