"""Errors that end a run, each with the exit code the CLI returns for it.

Exit codes (documented in the README):
  0  success (damaged input that still decoded partly also exits 0, with a warning and the
     damage in the report)
  1  unexpected internal error (a bug: please report it)
  2  bad command line or config
  3  input missing, unreadable or not a video/image
  4  output cannot be written (missing or read-only folder, unsupported format)
  5  model weights missing (offline) or a model failed to load
  6  stream error: RTSP/webcam unreachable, or the stream dropped for good
  130 interrupted by Ctrl-C (SIGINT); 143 terminated (SIGTERM)
"""

from __future__ import annotations


class CamstreamError(Exception):
    """Base class: a failure with a clear one-line message and an exit code."""

    exit_code = 1


class ConfigError(CamstreamError):
    exit_code = 2


class InputError(CamstreamError):
    exit_code = 3


class OutputError(CamstreamError):
    exit_code = 4


class ModelError(CamstreamError):
    exit_code = 5


class StreamError(CamstreamError):
    exit_code = 6


class Interrupted(CamstreamError):
    """Raised in the main thread by SIGINT/SIGTERM so that outputs are finalized."""

    def __init__(self, signum: int) -> None:
        import signal

        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}")
        self.exit_code = 128 + signum
