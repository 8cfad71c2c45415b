"""``--draw-detections`` and ``--preview-file``: what the detector found, drawn for tuning.

Everything here draws on the ANONYMIZED frame, after the cover: a box, a track id and a
score never sit over a raw face, and the preview file holds no original pixel (its left
half is the output with the detections drawn, its right half the output as written).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from tracking.tracker import Region

from .frame import Frame

# RGB, by region state: found this frame / held through a miss / covered from the next detection
COLOURS = {"detected": (0, 255, 0), "held": (255, 200, 0), "backfilled": (0, 200, 255)}


def draw_regions(image: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """Draws each region's box and ``#id score`` (``held``/``backfilled`` when not detected) in place."""
    thickness = max(1, round(max(image.shape[:2]) / 500))
    for r in regions:
        x1, y1, x2, y2 = (int(round(v)) for v in r.box)
        colour = COLOURS.get(r.state, (255, 0, 255))
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        label = f"#{r.track_id if r.track_id >= 0 else '-'} {r.confidence:.2f}" + ("" if r.state == "detected" else f" {r.state}")
        cv2.putText(image, label, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thickness, colour, thickness, cv2.LINE_AA)
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
