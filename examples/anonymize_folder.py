"""Anonymize every video in a folder from Python, with a JSON report per file.

    python examples/anonymize_folder.py INPUT_DIR OUTPUT_DIR [--method pixelate]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamer.config import load_config
from streamer.errors import CamstreamError
from streamer.runner import run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--method", default="pixelate")
    args = parser.parse_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    config = load_config([], [f"anonymize.method={args.method}"])
    for video in sorted(args.input_dir.glob("*.mp4")) + sorted(args.input_dir.glob("*.avi")):
        out = args.output_dir / f"{video.stem}.anonymized.mp4"
        try:
            report = run(str(video), str(out), config, report_path=str(out.with_suffix(".json")))
            print(f"{video.name}: {report.frames_out} frames, {len(report.tracks)} tracks, {report.fps:.1f} fps")
        except CamstreamError as exc:
            print(f"{video.name}: skipped ({exc})")


if __name__ == "__main__":
    main()
