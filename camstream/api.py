"""The library API: the same fail-closed run as ``camstream run``, from Python.

    import camstream

    report = camstream.anonymize("clip.mp4", "clip.anonymized.mp4", method="pixelate")
    for image in camstream.anonymize_frames(images, method="solid"):   # NumPy RGB arrays
        ...

Settings are the CLI's flags as keyword arguments (``threshold=0.3``, ``detect_every=2``,
``margin=0.4``, ...; see :data:`SETTINGS`), any config value as ``overrides={"section.key":
value}``, presets and YAML files as ``config=["paranoid"]``. A setting that would switch
protection off is refused (:class:`ConfigError`), as on the command line. Errors are the
CLI's: each a :class:`CamstreamError` with a one-line message and the exit code the CLI
would return (``exc.exit_code``).

A detector of your own plugs in with ``detector=``: anything with a ``detect(image)``
method (see :class:`Detector`). The pipeline around it (tracking, held and backfilled
covers, the fallback when the cover fails, the whole frame covered when the detector
fails) is the same as for the built-in detector.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from streamer.config import Config, _merge, load_config
from streamer.errors import CamstreamError, ConfigError, InputError
from streamer.report import RunReport as Report

__all__ = ["SETTINGS", "CamstreamError", "Detector", "FrameStream", "Report", "anonymize", "anonymize_frames"]

# Keyword -> config value: the CLI flag of the same name sets the same value.
SETTINGS: dict[str, str] = {
    "method": "anonymize.method",
    "fallback": "anonymize.fallback",
    "scope": "anonymize.scope",
    "shape": "anonymize.shape",
    "margin": "anonymize.margin",
    "mosaic_size": "anonymize.pixelate_blocks",
    "replace_with": "anonymize.replace_with",
    "color": "anonymize.color",
    "threshold": "detection.threshold",
    "detect_every": "detection.every",
    "rotated": "detection.rotated",
    "persons": "detection.persons",
    "person_weights": "detection.person_weights",
    "hold": "tracking.hold_frames",
    "keep_audio": "output.keep_audio",
    "keep_metadata": "output.keep_metadata",
    "audio_streams": "output.audio_streams",
    "keep_rotation": "output.keep_rotation",
    "crf": "output.crf",
    "models_dir": "models.dir",
    "device": "models.device",
}


@runtime_checkable
class Detector(Protocol):
    """What a face detector needs to plug in.

    ``detect`` gets one frame, an ``(H, W, 3)`` uint8 RGB array, and returns the faces in
    it: a ``supervision.Detections`` (``xyxy`` boxes in the frame's pixels, ``confidence``
    in [0, 1]), or an array of shape ``(N, 4)`` (boxes ``x1, y1, x2, y2``) or ``(N, 5)``
    (boxes and a confidence). It is called from the pipeline's detection threads, one
    call at a time (the API holds a lock around it), on the frames the schedule picks
    (every ``detect_every``-th frame, scene cuts, the frame before a cut). If it raises,
    the frames it was asked about are covered whole.
    """

    def detect(self, image: np.ndarray) -> Any: ...  # noqa: ANN401 - sv.Detections or an (N, 4|5) array


class _Plugged:
    """A user's detector as the pipeline expects it: one call at a time, sv.Detections out."""

    kind = "face"

    def __init__(self, detector: Detector) -> None:
        if not callable(getattr(detector, "detect", None)):
            raise ConfigError(f"detector: {type(detector).__name__} has no detect(image) method")
        self.detector = detector
        self.name = type(detector).__name__
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray):  # noqa: ANN201 - sv.Detections
        import supervision as sv

        with self._lock:
            found = self.detector.detect(image)
        if isinstance(found, sv.Detections):
            if found.confidence is None:
                found.confidence = np.ones(len(found), np.float32)
            return found
        boxes = np.asarray(found, np.float32)
        if boxes.size == 0:
            return sv.Detections.empty()
        if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
            raise ValueError(f"{self.name}.detect returned an array of shape {boxes.shape}; expected (N, 4) or (N, 5)")
        scores = boxes[:, 4] if boxes.shape[1] == 5 else np.ones(len(boxes), np.float32)
        return sv.Detections(xyxy=boxes[:, :4].copy(), confidence=scores.astype(np.float32), class_id=np.zeros(len(boxes), int))


def _config(config: Sequence[str | Path] | str | Path, overrides: dict[str, Any] | None, settings: dict[str, Any]) -> Config:
    files = [config] if isinstance(config, str | Path) else list(config)
    conf = load_config(files)
    values = dict(overrides or {})
    for key, value in settings.items():
        if key not in SETTINGS:
            known = ", ".join(sorted(SETTINGS))
            raise ConfigError(f"{key}: unknown setting (known: {known}; any config value: overrides={{'section.key': value}})")
        values[SETTINGS[key]] = value
    for key, value in values.items():
        section, dot, name = key.partition(".")
        target = getattr(conf, section, None)
        if not dot or target is None or not hasattr(target, name):
            raise ConfigError(f"{key}: unknown config value (expected section.key, e.g. detection.threshold)")
        _merge(conf, {section: {name: value}}, "")
    if conf.anonymize.replace_with and "method" not in settings:
        conf.anonymize.method = "image"
    return conf


def anonymize(
    input: str | Path,  # noqa: A002 - the CLI's word for it
    output: str | Path | None = None,
    *,
    detector: Detector | None = None,
    overwrite: bool = False,
    report: str | Path | None = None,
    start: float | None = None,
    end: float | None = None,
    progress: bool = False,
    config: Sequence[str | Path] | str | Path = (),
    overrides: dict[str, Any] | None = None,
    **settings: Any,  # noqa: ANN401
) -> Report:
    """Anonymize a video file, image, folder of images, ``rtsp://`` URL or ``webcam:N``
    into ``output`` (default: ``NAME.anonymized.mp4`` beside it, as the CLI) and return
    the run's report (``report.status``, ``frames_out``, ``tracks``, ...; also written as
    JSON to ``report`` when given). An existing output is refused unless ``overwrite``;
    the input is never written. Raises :class:`CamstreamError` (``exit_code`` as the CLI's).
    """
    from streamer.batch import prepare
    from streamer.paths import check_input, check_output, plan

    conf = _config(config, overrides, settings)
    (job,) = plan([str(input)], None if output is None else str(output), None if report is None else str(report))
    check_input(job.input)
    check_output(job, overwrite)
    prepare(job)
    from streamer.runner import run

    return run(
        job.input,
        job.output,
        conf,
        start=start,
        end=end,
        report_path=job.report,
        progress=progress,
        detector=None if detector is None else _Plugged(detector),
    )


class _Arrays:
    """The pipeline's source for in-memory frames (it reads them itself, one by one)."""

    def __init__(self, fps: float) -> None:
        from streamer.sources import SourceInfo, SourceStats

        self.info = SourceInfo(uri="<arrays>", kind="arrays", fps=Fraction(fps).limit_denominator(1001))
        self.stats = SourceStats()

    def close(self) -> None:
        pass


class FrameStream:
    """An iterator over anonymized frames; see :func:`anonymize_frames`.

    :attr:`report` fills in as frames go through and is complete once the iterator is
    exhausted (or :meth:`close` d).
    """

    def __init__(self, frames: Iterable[np.ndarray], conf: Config, detector: Detector | None, fps: float) -> None:
        from streamer.auto import resolve as resolve_method
        from streamer.frame import Frame
        from streamer.pipeline import Pipeline
        from streamer.runner import build_anonymizer, build_classical, build_tracker
        from streamer.validate import validate
        from tracking.detectors import build_detector

        if not fps > 0:
            raise ConfigError(f"fps must be above 0, not {fps!r}")
        validate(conf)
        choice = resolve_method(conf)
        if choice is not None:  # method "auto" (the default): the one it chose runs, and the report says why
            conf = copy.deepcopy(conf)
            conf.anonymize.method = choice.method
        det, trk, ano = conf.detection, conf.tracking, conf.anonymize
        self.report = Report(
            input="<arrays>", method=ano.method, config=conf.to_dict(), method_reason=None if choice is None else choice.line
        )
        anonymizer = build_anonymizer(ano.method, conf)
        plugged = (
            _Plugged(detector)
            if detector is not None
            else build_detector(det.detector, det.threshold, det.max_side, rotated=det.rotated)
        )
        tracker = build_tracker(conf, fps)
        self._pipeline = Pipeline(
            source=_Arrays(fps),
            sink=None,
            detector=plugged,
            tracker=tracker,
            anonymizer=anonymizer,  # type: ignore[arg-type]
            fallback=build_classical(ano.fallback, conf),
            detect_every=det.every,
            scene_cut=det.scene_cut,
            hold_growth=trk.hold_growth,
            report=self.report,
            full_every=det.full_every,
        )
        time_base = Fraction(1) / Fraction(fps).limit_denominator(1001)

        def intake() -> Iterator[Frame]:
            for i, image in enumerate(frames):
                array = np.asarray(image)
                if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 2:
                    raise InputError(f"frame {i}: expected an (H, W, 3) uint8 RGB array, got shape {array.shape} {array.dtype}")
                # A copy: the pipeline holds frames until the next detection, and a caller may reuse its buffer.
                yield Frame(index=i, image=np.array(array, copy=True, order="C"), pts=i, time_base=time_base)

        self._started = time.perf_counter()
        self._frames = self._pipeline.process(intake())
        self._closed = False

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> np.ndarray:
        if self._closed:
            raise StopIteration
        try:
            frame = next(self._frames)
        except StopIteration:
            self._finish("ok")
            raise
        except BaseException as exc:
            self._finish("error", exc)
            raise
        self.report.frames_out += 1
        return frame.image

    def close(self) -> None:
        """Stop early (the detection threads end now); the report says so."""
        if not self._closed:
            self._frames.close()
            self._finish("ok" if self.report.frames_out == self.report.frames_in else "interrupted")

    def _finish(self, status: str, exc: BaseException | None = None) -> None:
        self._closed = True
        self.report.status = status
        if exc is not None:
            self.report.error = str(exc) if isinstance(exc, CamstreamError) else f"{type(exc).__name__}: {exc}"
        self._pipeline._finish_report(time.perf_counter() - self._started)
        if hasattr(self._pipeline.anonymizer, "close"):
            self._pipeline.anonymizer.close()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def anonymize_frames(
    frames: Iterable[np.ndarray],
    *,
    fps: float = 25.0,
    detector: Detector | None = None,
    config: Sequence[str | Path] | str | Path = (),
    overrides: dict[str, Any] | None = None,
    **settings: Any,  # noqa: ANN401
) -> FrameStream:
    """Anonymize a sequence of ``(H, W, 3)`` uint8 **RGB** frames (one video: the frames of
    one camera, in order), yielding each anonymized frame in order.

    The pipeline is the file pipeline's: the detector runs on every ``detect_every``-th
    frame and tracking covers the frames between, so a frame comes out only once the
    next detection has run (up to about ``2 * detect_every`` frames later): a face that
    appears between two detections is covered from its first frame. ``fps`` is the
    frames' rate (the tracker's clock). OpenCV reads BGR: convert with
    ``cv2.cvtColor(image, cv2.COLOR_BGR2RGB)``. The returned :class:`FrameStream` has the
    run's :attr:`~FrameStream.report`; ``with`` or ``close()`` stops early.
    """
    return FrameStream(frames, _config(config, overrides, settings), detector, fps)
