"""``--draw-detections`` and ``--preview-file``: what the detector found, drawn for tuning.

Everything here draws on the ANONYMIZED frame, after the cover: a box, a track id and a
score never sit over a raw face, and the preview file holds no original pixel (its left
half is the output with the detections drawn, its right half the output as written).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from tracking.tracker import Region

from .frame import Frame

# RGB, by region state: found this frame / held through a miss / covered from the next
# detection / between two detections
COLOURS = {"detected": (0, 255, 0), "held": (255, 200, 0), "backfilled": (0, 200, 255), "interpolated": (200, 255, 120)}
# The word beside the track id when the region was not detected in this frame (its score
# would be an older detection's, so none is shown).
STATES = {"held": "held", "backfilled": "backfill", "interpolated": "between"}
ORDER = ("detected", "interpolated", "held", "backfilled")  # which of a pile gets the label


@dataclass
class Label:
    text: str
    x: int  # top left of the text's background box
    y: int
    w: int
    h: int
    colour: tuple[int, int, int]


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the smaller box: a pile of covers for one face overlaps near 1."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / small if small > 0 else 0.0


def label_text(r: Region) -> str:
    """``#3 0.87`` for a detection, ``#3 held`` when covered without one; ``new`` for a
    face no track was confirmed for yet."""
    who = f"#{r.track_id}" if r.track_id >= 0 else "new"
    return f"{who} {r.confidence:.2f}" if r.state == "detected" else f"{who} {STATES.get(r.state, r.state)}"


def plan_labels(regions: Sequence[Region], width: int, height: int, scale: float = 0.4, thickness: int = 1) -> list[Label]:
    """One label per face, readable: a track's (or one place's) pile of covers, detected,
    held, backfilled and between, gets one label, from its most certain region; labels
    stay inside the frame and move below their box rather than over another label."""
    ranked = sorted(regions, key=lambda r: (ORDER.index(r.state) if r.state in ORDER else len(ORDER), -r.confidence))
    labelled: list[tuple[int, tuple[float, ...]]] = []
    placed: list[Label] = []
    for r in ranked:
        box = tuple(float(v) for v in r.box)
        if any((tid == r.track_id and tid >= 0) or _overlap(box, other) > 0.5 for tid, other in labelled):
            continue  # the same face: labelled already
        labelled.append((r.track_id, box))
        text = label_text(r)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        w, h = tw + 4, th + base + 4
        x = int(min(max(0, box[0]), max(0, width - w)))
        candidates = [box[1] - h, box[3] + 1, box[1] + 1]  # above the box, below it, inside its top
        for y in candidates:
            y = int(min(max(0, y), max(0, height - h)))
            spot = (x, y, x + w, y + h)
            if not any(_overlap(spot, (o.x, o.y, o.x + o.w, o.y + o.h)) > 0 for o in placed):
                break
        placed.append(Label(text, x, y, w, h, COLOURS.get(r.state, (255, 0, 255))))
    return placed


def draw_regions(image: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """Draws every region's box (thin unless detected) and one label per face, in place."""
    h, w = image.shape[:2]
    thickness = max(1, round(max(h, w) / 500))
    for r in regions:
        x1, y1, x2, y2 = (int(round(v)) for v in r.box)
        colour = COLOURS.get(r.state, (255, 0, 255))
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness if r.state == "detected" else max(1, thickness // 2), cv2.LINE_AA)
    scale = 0.4 * thickness
    for label in plan_labels(regions, w, h, scale, thickness):
        cv2.rectangle(image, (label.x, label.y), (label.x + label.w, label.y + label.h), (0, 0, 0), -1)  # text on black: readable anywhere
        cv2.putText(image, label.text, (label.x + 2, label.y + label.h - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, label.colour, thickness,
                    cv2.LINE_AA)
    return image


class _Drawing:
    """An anonymizer that draws the regions onto what the wrapped one returns."""

    def __init__(self, inner: Any, overlay: Overlay) -> None:  # noqa: ANN401 - any Anonymizer
        self._inner, self._overlay = inner, overlay

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - name, close(), report() of the method
        return getattr(self._inner, name)

    def anonymize(self, image: np.ndarray, regions: Sequence[Region], frame: Frame | None = None) -> np.ndarray:
        out = self._inner.anonymize(image, regions, frame)
        self._overlay.last = (out, list(regions))
        if self._overlay.draw:
            draw_regions(out, regions)
        return out


class Overlay:
    def __init__(self, draw: bool = False, preview: Any = None) -> None:  # noqa: ANN401 - a sinks.Sink
        self.draw, self.sink = draw, preview
        self.last: tuple[np.ndarray, list[Region]] | None = None  # the latest anonymized image and its regions
        self.written = 0

    def wrap(self, anonymizer: Any) -> Any:  # noqa: ANN401
        return _Drawing(anonymizer, self) if self.draw or self.sink is not None else anonymizer

    def preview_writer(self, then: Callable[[np.ndarray, np.ndarray], None] | None) -> Callable[[np.ndarray, np.ndarray], None]:
        """The pipeline's preview hook: ``(original, anonymized)``; the original is never written."""

        def write(original: np.ndarray, anonymized: np.ndarray) -> None:
            if then is not None:
                then(original, anonymized)  # the on-screen --preview, if asked too
            regions = self.last[1] if self.last is not None and self.last[0] is anonymized else []
            left = anonymized.copy()
            if not self.draw:  # already drawn on the output otherwise
                draw_regions(left, regions)
            self.sink.write(Frame(index=self.written, image=np.concatenate([left, anonymized], axis=1)))
            self.written += 1

        return write

    def close(self, success: bool = True) -> None:
        if self.sink is not None:
            self.sink.close(success=success)
