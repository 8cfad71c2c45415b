"""Printing and drawing evaluation results: one table, a JSON report, PNG charts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import OutputError
from .evaluate import EvalResult, Evaluation

COLUMNS = ["method", "leak rate", "exposed", "bare", "tracks leaked", "re-id rate", "top-1", "median dist", "warp err", "PSNR out", "fps"]


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table_rows(results: list[EvalResult]) -> list[list[str]]:
    rows = []
    for r in results:
        p, u = r.privacy, r.utility
        rows.append([
            r.name,
            _num(p.leak_rate if p.faces else None, ".1%"),
            _pixel(r, p.reference_exposed, p.reference_faces),
            _pixel(r, p.reference_bare, p.reference_faces),
            f"{p.tracks_leaked}/{p.tracks}",
            _num(p.reid_rate if p.reid_faces else None, ".1%"),
            _num(p.gallery_top1 if p.reid_faces else None, ".1%"),
            _num(p.median_distance, ".3f"),
            _num(u.warp_error, ".5f"),
            _num(u.psnr_outside, ".1f"),
            _num(r.fps, ".1f"),
        ])
    return rows


def _pixel(result: EvalResult, count: int, faces: int) -> str:
    if not faces:
        return "-"
    return f"{count}/{faces}" if result.pixel_measure else "n/a"


def pixel_measure_note(results: list[EvalResult], two_files: bool = False) -> str | None:
    """The line under the table that says why a row's exposed/bare reads n/a."""
    hidden = [r for r in results if r.privacy.reference_faces and not r.pixel_measure]
    if not hidden:
        return None
    names = ", ".join(r.name if r.cover is None else f"{r.name} ({r.cover})" for r in hidden)
    text = (f"exposed/bare n/a for {names}: the pixel measure (share of each face's eyes-nose-mouth box replaced) "
            "means something for solid covers only; the leak and re-id columns hold for every method")
    if two_files and any(r.cover is None for r in hidden):
        text += "; add --method solid if the output was made with solid"
    return text


def format_table(results: list[EvalResult]) -> str:
    rows = [COLUMNS, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    line = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))  # noqa: E731
    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths), *(line(r) for r in rows[1:])])


def format_checks(result: EvalResult) -> str:
    m, u = result.media, result.utility
    parts = [
        f"frames {m['original_frames']} -> {m['output_frames']} ({m['paired_frames']} paired"
        + (f", {m['unpaired_original_frames']} original / {m['unpaired_output_frames']} output unpaired" if m["unpaired_original_frames"] or m["unpaired_output_frames"] else "")
        + ")",
    ]
    if m["original_duration"] is not None:
        parts.append(f"duration {m['original_duration']:.2f}s -> {_num(m['output_duration'], '.2f')}s")
    parts.append(f"audio {'yes' if m['original_audio'] else 'no'} -> {'yes' if m['output_audio'] else 'no'}")
    parts.append(f"faces/frame {u.faces_per_frame_original:.2f} -> {u.faces_per_frame_output:.2f}")
    if u.ssim_outside is not None:
        parts.append(f"SSIM out {u.ssim_outside:.3f}")
    return f"{result.name}: " + ", ".join(parts)


def write_json(evaluation: Evaluation, path: str | Path) -> None:
    try:
        Path(path).write_text(json.dumps(evaluation.to_dict(), indent=2, default=_jsonable) + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write report ({exc.strerror})") from None


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:  # noqa: ANN001
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write plot ({exc.strerror})") from None
    finally:
        _pyplot().close(fig)


def plot_frames(result: EvalResult, path: str | Path) -> None:
    """Per frame: faces in the original, faces leaked, and warping error."""
    plt = _pyplot()
    frames = [f["frame"] for f in result.per_frame]
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    a.step(frames, [f["faces"] for f in result.per_frame], where="mid", label="faces in original")
    a.step(frames, [f["leaked"] for f in result.per_frame], where="mid", color="red", label="still found in output (leaked)")
    a.set_ylabel("faces")
    a.legend(loc="upper right")
    a.set_title(f"{result.name}: leak rate {result.privacy.leak_rate:.1%}, re-id {result.privacy.reid_rate:.1%}")
    warp = [(f["frame"], f["warp_error"]) for f in result.per_frame if f["warp_error"] is not None]
    if warp:
        b.plot(*zip(*warp, strict=True), ".-", ms=3)
    b.set_ylabel("warping error (regions)")
    b.set_xlabel("frame")
    fig.tight_layout()
    _save(fig, path)


def plot_compare(results: list[EvalResult], path: str | Path) -> None:
    """Bar charts, one per figure, one bar per method."""
    plt = _pyplot()
    names = [r.name for r in results]
    panels = [
        ("leak rate (lower = more private)", [r.privacy.leak_rate for r in results]),
        ("re-id rate (lower = more private)", [r.privacy.reid_rate for r in results]),
        ("warping error in regions (lower = steadier)", [r.utility.warp_error or 0.0 for r in results]),
        ("PSNR outside regions, dB (higher = untouched)", [min(r.utility.psnr_outside or 0.0, 60.0) for r in results]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, values) in zip(axes, panels, strict=True):
        ax.bar(range(len(names)), values, color=[colors[i % len(colors)] for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def contact_sheet(evaluation: Evaluation, path: str | Path) -> None:
    """Rows: sampled frames with faces; columns: original and each output."""
    import cv2

    names = ["original"] + [r.name for r in evaluation.results if r.name != "original"]
    rows = []
    for thumbs in evaluation.thumbnails:
        first = thumbs["original"]
        cells = []
        for name in names:
            cell = thumbs.get(name, np.zeros_like(first))
            cell = cell.copy()
            cv2.rectangle(cell, (0, 0), (cell.shape[1], 18), (0, 0, 0), -1)
            cv2.putText(cell, name, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            cells.append(cell)
        rows.append(np.concatenate(cells, axis=1))
    if not rows:
        return
    sheet = np.concatenate(rows, axis=0)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OutputError(f"{path}: cannot write contact sheet")
