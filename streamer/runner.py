"""Builds a :class:`~streamer.pipeline.Pipeline` from a config and runs it with a
progress bar (files) or periodic stats (streams)."""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from tracking.detectors import CenterFaceCrops, Detector, YoloPersonDetector, build_detector
from tracking.regions import RegionsFile
from tracking.tracker import FaceTracker

from .anonymizers import CLASSICAL, Anonymizer, Shape, load_replacement
from .auto import resolve as resolve_method
from .classes import ClassCover, class_detectors, class_kinds, class_tracker, plate_cover
from .config import Config
from .errors import ConfigError, ModelError, OutputError
from .extras import install_hint, missing_extra
from .overlay import Overlay
from .paths import check_distinct, check_paths, check_target, claim, default_output
from .pipeline import Pipeline
from .report import RunReport, made_with
from .sinks import open_sink
from .sources import ImageSource, image_output_name, open_source
from .stills import numbered_sequence
from .validate import validate
from .words import plural

log = logging.getLogger("camstream")


def build_classical(name: str, config: Config) -> Anonymizer:
    a = config.anonymize
    if a.shape not in ("ellipse", "box"):
        raise ConfigError(f"anonymize.shape: {a.shape!r} is not ellipse or box")
    shape = Shape(kind=a.shape, margin=a.margin)
    if name == "solid":
        return CLASSICAL["solid"](shape, color=tuple(a.color))
    if name == "pixelate":
        return CLASSICAL["pixelate"](shape, blocks=a.pixelate_blocks, min_block_px=a.pixelate_min_cell_px)
    if name == "blur":
        return CLASSICAL["blur"](shape, strength=a.blur_strength)
    if name == "image":
        if not a.replace_with:
            raise ConfigError("method 'image' needs anonymize.replace_with (--replace-with IMAGE)")
        return CLASSICAL["image"](shape, image=load_replacement(a.replace_with))
    raise ConfigError(f"unknown method {name!r}")


def _diffusion_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "diffusers", "transformers"))


def build_anonymizer(name: str, config: Config) -> Anonymizer:
    if name in CLASSICAL:
        return build_classical(name, config)
    try:
        from camouflage.models.methods import build_method
    except ModuleNotFoundError:
        raise ConfigError(f"unknown method {name!r}") from None
    if not _diffusion_installed():
        raise ModelError(f"--method {name} needs the diffusion extra: {install_hint('diffusion')} "
                         "(or --method auto or pixelate: no models needed)")
    try:
        return build_method(name, config)
    except ModuleNotFoundError as exc:  # one package of the extra missing (a partial install)
        missing = missing_extra(exc)
        if missing is None:
            raise
        raise ModelError(f"--method {name}: {missing}") from None


class _Progress:
    """tqdm bar for files; a stats line every few seconds for live streams."""

    def __init__(self, total: int | None, live: bool, interval: float, enabled: bool) -> None:
        self.live, self.interval, self.enabled = live, interval, enabled
        self.bar = None
        self.started = self.last = time.monotonic()
        self.pipeline: Pipeline | None = None
        self.total = total

    def __call__(self, written: int) -> None:
        if self.enabled and not self.live and self.bar is None:
            from tqdm import tqdm  # at the first frame: an error before it prints no empty bar

            self.bar = tqdm(total=self.total, unit="frame", dynamic_ncols=True, file=sys.stderr, smoothing=0.1)
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and self.live:
            now = time.monotonic()
            if now - self.last >= self.interval and self.pipeline is not None:
                self.last = now
                r, s = self.pipeline.report, self.pipeline.source.stats
                fps = written / (now - self.started)
                live_tracks = sum(1 for st in self.pipeline.tracker.stats.values() if st.last_frame >= r.frames_in - 2)
                log.info(
                    "%d frames, %.1f fps, %d faces now, %d tracks, %d frames lost, %d reconnects",
                    written, fps, live_tracks, len(self.pipeline.tracker.stats), s.frames_lost, s.reconnects,
                )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _preview_window():  # noqa: ANN202
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise ConfigError("--preview needs a display (DISPLAY is not set)")
    import cv2
    import numpy as np

    def show(original, anonymized) -> None:  # noqa: ANN001
        both = np.concatenate([original, anonymized], axis=1)
        cv2.imshow("camstream: original | anonymized (not written)", cv2.cvtColor(both, cv2.COLOR_RGB2BGR))
        cv2.waitKey(1)

    return show


def run(
    input_uri: str,
    output: str | None,
    config: Config,
    *,
    start: float | None = None,
    end: float | None = None,
    report_path: str | None = None,
    progress: bool = True,
    preview: bool = False,
    preview_file: str | None = None,
    draw_detections: bool = False,
    on_frame: Callable[[int, int | None], None] | None = None,
    overwrite: bool = True,
    inputs: Sequence[str] | None = None,
    regions: str | None = None,
    regions_only: bool = False,
    detector: Detector | None = None,
) -> RunReport:
    """``on_frame(frames written, frames expected or None)`` after each written frame
    (progress for a caller that runs many files, e.g. a Ray worker). ``overwrite``: the
    output, report and preview may replace existing files, as a library call that names
    them expects (never an input); ``camstream run`` passes its ``--overwrite``, so that
    without it an existing file, or one that appears while the run writes, is never
    replaced. ``inputs``: every input of the run this file belongs to (none is written).
    ``regions``: a MOTChallenge detection CSV whose boxes are covered too
    (``regions_only``: alone). ``detector``: a face detector of the caller's (the library
    API's bring-your-own detector) in place of ``detection.detector``."""
    det, trk, ano, out, st = config.detection, config.tracking, config.anonymize, config.output, config.stream
    validate(config)
    given = RegionsFile.load(regions) if regions else None  # a bad file fails before anything opens
    inputs = [*(inputs or []), input_uri]
    # before any work: a bad path fails now, not at the end
    check_paths(input_uri, output, report_path, overwrite=overwrite, inputs=inputs)
    if preview_file:
        check_target(preview_file, "preview", inputs, overwrite)
    show = _preview_window() if preview else None  # no display: exit 2 before anything is printed
    source = open_source(
        input_uri,
        start=start,
        end=end,
        **(
            {
                "open_timeout": st.open_timeout,
                "read_timeout": st.read_timeout,
                "reconnect_attempts": st.reconnect_attempts,
                "reconnect_backoff": st.reconnect_backoff,
                "reconnect_max_backoff": st.reconnect_max_backoff,
            }
            if "://" in input_uri or input_uri.startswith("webcam:")
            else {}
        ),
    )
    sink = preview_sink = None
    locks = ExitStack()
    choice = None
    try:
        info = source.info
        # The input first (a missing file or camera is reported before any model loads),
        # then the models: a missing model fails before any output is created.
        choice = resolve_method(config)
        if choice is not None:  # --method auto: run (and report) the method it chose
            config = copy.deepcopy(config)
            config.anonymize.method = choice.method
            ano = config.anonymize
        anonymizer = build_anonymizer(ano.method, config)
        fallback = build_classical(ano.fallback, config)
        extra = [] if regions_only else class_detectors(config)  # --detect plates, persons
        if given is not None and regions_only:  # the file's boxes alone
            detector = given.detector()
        else:
            if detector is None:
                detector = build_detector(det.detector, det.threshold, det.max_side, rotated=det.rotated)
            if given is not None:
                extra.append(given.detector())
        if (det.persons or ano.scope == "person") and "persons" not in det.classes and not regions_only:
            try:
                extra.append(YoloPersonDetector(det.person_weights, det.person_threshold))
            except ModelError as exc:
                if ano.scope == "person" or not det.persons_optional:
                    raise
                log.warning("%s; continuing with faces only", exc)
        target = output or default_output(input_uri, info.kind)
        check_paths(input_uri, target, report_path, overwrite=overwrite, inputs=inputs)
        check_distinct([("the output", target), ("the report", report_path), ("the preview", preview_file)])
        names = [image_output_name(p.name) for p in source.files] if isinstance(source, ImageSource) and info.kind == "images" else None
        sink_options = {"crf": out.crf, "preset": out.preset, "keep_audio": out.keep_audio, "keep_metadata": out.keep_metadata, "start": start, "end": end,
                        "audio_streams": out.audio_streams, "keep_rotation": out.keep_rotation, "overwrite": overwrite}
        locks.enter_context(claim([target, report_path, preview_file]))  # a second run writing these now is refused
        sink = open_sink(target, info, names=names, **sink_options)
        if preview_file:
            preview_sink = _open_preview(preview_file, target, info, overwrite)
    except BaseException:
        source.close()
        if sink is not None:
            sink.close(success=False)
        locks.close()
        raise
    if hasattr(anonymizer, "live"):
        anonymizer.live = info.live  # camouflage: a latency budget on live streams (mode auto)
    fps = float(info.fps) if info.fps else 25.0
    tracker = class_tracker(build_tracker(config, fps), config)
    report = RunReport(input=input_uri, method=ano.method, config=config.to_dict(),
                       method_reason=None if choice is None else choice.line)
    report.made_with = made_with(ano.method, report.config, start, end)
    report.source = {
        "kind": info.kind, "width": info.width, "height": info.height,
        "fps": float(info.fps) if info.fps else None, "frame_count": info.frame_count,
        "duration": info.duration, "has_audio": info.has_audio,
    }
    if isinstance(source, ImageSource) and source.skipped:
        report.source["skipped_files"] = list(source.skipped)  # not images: listed, never read
    anonymizer = cover = ClassCover(anonymizer, plate_cover(config, build_classical))
    overlay = Overlay(draw=draw_detections, preview=preview_sink)
    anonymizer, fallback = overlay.wrap(anonymizer), overlay.wrap(fallback)
    bar = _Progress(info.frame_count, info.live, st.stats_interval, progress and info.kind not in ("image",))
    pipeline = Pipeline(
        source=source,
        sink=sink,
        detector=detector,
        tracker=tracker,
        anonymizer=anonymizer,
        fallback=fallback,
        # regions only: the file's boxes reach the tracker on every frame they are given
        detect_every=1 if info.kind in ("image", "images") or (given is not None and regions_only) else det.every,
        scene_cut=det.scene_cut,
        hold_growth=trk.hold_growth,
        report=report,
        on_frame=bar if on_frame is None else lambda n: (bar(n), on_frame(n, info.frame_count)),
        extra_detectors=extra,
        stills=info.kind == "images" and not numbered_sequence(list(source.files)),
        full_every=det.full_every,
        second_look=CenterFaceCrops(det.threshold) if det.second_look == "centerface" else None,
    )
    pipeline.preview = show
    if given is not None:
        pipeline.given_regions = given.regions
        report.source["regions_file"] = {"path": str(regions), "boxes": len(given), "only": regions_only}
    if preview_sink is not None:
        pipeline.preview = overlay.preview_writer(pipeline.preview)
    bar.pipeline = pipeline
    try:
        with locks:
            try:
                pipeline.run()
            finally:
                with pipeline.signals_deferred():  # a late Ctrl-C must not lose the report
                    bar.close()
                    overlay.close(success=report.status in ("ok", "partial"))  # an interrupted preview keeps .partial
                    if hasattr(anonymizer, "close"):
                        anonymizer.close()
                    report.classes = cover.counts(class_kinds(config))
                    if report.output and "://" not in report.output and not Path(report.output).exists():
                        report.output = None  # the sink failed before it created anything: the report must not name a file
                    if report_path:
                        report.write(report_path, overwrite=overwrite)
                    _summary(report, report_path)
    finally:
        locks.close()
    return report


def build_tracker(config: Config, fps: float) -> FaceTracker:
    """The face tracker of ``config`` (runs, the library API)."""
    det, trk = config.detection, config.tracking
    return FaceTracker(
        fps=fps,
        hold_frames=trk.hold_frames,
        hold_growth=trk.hold_growth,
        hold_max_growth=trk.hold_max_growth,
        # Fail-closed: every detection the cover uses may start a track (held if lost).
        activation_threshold=min(trk.activation_threshold, det.threshold),
    )


def _open_preview(path: str, target: str, info, overwrite: bool = False):  # noqa: ANN001, ANN202 - SourceInfo -> Sink
    """The --preview-file sink: twice as wide, no audio, at the nominal rate."""
    import dataclasses

    if "://" not in target and Path(path).resolve() == Path(target).resolve():
        raise OutputError(f"{path}: --preview-file would overwrite the output")
    wide = dataclasses.replace(info, width=info.width * 2, has_audio=False, time_base=None, metadata={})
    return open_sink(path, wide, overwrite=overwrite)


def _summary(report: RunReport, report_path: str | None = None) -> None:
    where = report.output or "(nothing written)"
    if report.status in ("ok", "partial"):
        log.info(
            "%s: %s, %s, %s covered (%d held through detector misses) at %.1f fps",
            where, plural(report.frames_out, "frame"), plural(len(report.tracks), "track"),
            plural(report.regions_covered, "region"), report.regions_held, report.fps,
        )
        if len(report.classes) > 1:  # --detect plates/persons: each class apart
            log.info("by class: %s", "; ".join(f"{kind} {plural(c['regions_covered'], 'region')} in {plural(c['tracks'], 'track')}"
                                               for kind, c in report.classes.items()))
        a = report.anonymizer
        if a.get("keyframes") is not None:
            extra = f"; {a['reused_late_regions']} late regions reused their identity's latest face" \
                if a.get("reused_late_regions") else ""
            if a.get("identity_drift") is not None:
                extra += f"; identity drift {a['identity_drift']} (the real person's {a['identity_drift_original']})"
            log.info(
                "%s: %d identities, %d keyframes (Base), %d regions by Light, %d covered by the fallback (%d late); "
                "UNet evaluations per face and frame %s (per-frame Base %s); flicker %s%s",
                report.method, a["identities"], a["keyframes"], a["light_regions"],
                a["fallback_failed_regions"] + a["fallback_late_regions"], a["fallback_late_regions"],
                a["unet_evals_per_face_frame"], a["per_frame_base_unet_evals_per_face_frame"],
                a["flicker_warping_error"] if a.get("flicker_warping_error") is not None else "not measured", extra,
            )
        skipped = report.source.get("skipped_files") or []
        if skipped:
            shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
            log.warning("%s in the folder skipped: not images (%s)", plural(len(skipped), "entry", "entries"), shown)
        if report.decode_errors and report.source.get("kind") in ("image", "images"):
            log.warning("%s damaged (covered whole) or unreadable (left out): %s",
                        plural(report.decode_errors, "image"),
                        f"{report_path} lists them" if report_path else "the warnings above name them (--report PATH lists them)")
        elif report.decode_errors:
            log.warning("input was damaged: %s (the report's source_errors list them); the output holds what decoded",
                        plural(report.decode_errors, "decode error"))
        if report.frames_lost or report.reconnects:
            log.warning("stream: %d reconnect(s), about %d frames lost", report.reconnects, report.frames_lost)
    elif report.output and report.frames_out:  # a partial file that holds frames (none created: the error says why)
        log.warning("%s: run did not finish (%s); %s written to this partial file", where, report.status,
                    plural(report.frames_out, "frame"))
