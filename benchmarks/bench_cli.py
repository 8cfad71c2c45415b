"""How fast ``camstream`` answers before any work: --help, bad usage, a missing input.

    python benchmarks/bench_cli.py [--repeat 5]

Each row is a fresh process (``python -m streamer ...``), best and median of N runs, wall
clock; the inputs are never opened beyond the cheap checks, so no model is loaded.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = [
    ("camstream --help", ["--help"]),
    ("camstream run --help", ["run", "--help"]),
    ("camstream run --bogus (usage error)", ["run", "x.mp4", "--bogus"]),
    ("camstream run nothere.mp4 (exit 3)", ["run", "nothere.mp4"]),
    ("camstream run webcam:9 (exit 6)", ["run", "webcam:9"]),
    ("python -c pass (interpreter alone)", None),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("| command | exit | best s | median s |")
    print("|---|--:|--:|--:|")
    for label, argv in CASES:
        cmd = [sys.executable, "-c", "pass"] if argv is None else [sys.executable, "-m", "streamer", *argv]
        times, code = [], 0
        for _ in range(args.repeat):
            t = time.perf_counter()
            code = subprocess.run(cmd, cwd=REPO, capture_output=True).returncode
            times.append(time.perf_counter() - t)
        print(f"| `{label}` | {code} | {min(times):.2f} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
