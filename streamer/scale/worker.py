"""One Ray worker of a batch: runs whole files through ``streamer.runner.run``.

A file is written in a staging folder inside the output folder
(``OUTDIR/.camstream-staging/``, same filesystem, so the final rename is atomic) and
moved into place only when its run succeeded: a worker killed mid-file leaves its
partial output in staging, never beside the finished files. Its report is moved in
after the output, so "report says ok" always means "output complete".
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

STAGING = ".camstream-staging"
PROGRESS_EVERY = 0.25  # seconds between progress messages to the driver


def _replace(staged: Path, final: Path, overwrite: bool = False) -> None:
    """Move a finished file (or folder of images) into place: over an older one only with
    ``overwrite`` (else only while the name is free: streamer.paths.publish)."""
    from ..errors import OutputError
    from ..paths import publish

    if staged.is_dir():
        if os.path.lexists(final) and not overwrite:
            raise OutputError(f"{final} appeared while this file was processed; left untouched (add --overwrite to replace)")
        if final.exists():
            old = staged.with_name(staged.name + ".old")
            os.replace(final, old)
            os.replace(staged, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staged, final)
    else:
        publish(staged, final, overwrite)


def _count_attempt(root: Path, unit_id: str) -> int:
    """Attempts at this unit so far, this one included (a killed attempt left its line)."""
    marker = root / f"{unit_id}.attempts"
    with marker.open("a") as f:
        f.write(f"{socket.gethostname()} {os.getpid()} {time.time():.3f}\n")
    return len(marker.read_text().splitlines())


class FileWorker:
    """Wrapped with ``ray.remote`` by the batch driver; built once per worker process."""

    def __init__(self, config: Any, board: str | None = None) -> None:
        from ..anonymizers import CLASSICAL
        from ..redact import install_log_redaction

        install_log_redaction()  # this worker's log lines are forwarded to the driver
        # The progress board by name: an actor handle among the constructor's arguments
        # would live in the object store, which a restart after a crash may not find.
        self.config, self.board = config, None
        if board is not None:
            import ray

            self.board = ray.get_actor(board)
        if config.anonymize.method not in CLASSICAL:
            from .models import keep_models_loaded

            keep_models_loaded()  # the first file loads the weights, the next ones reuse them

    def pid(self) -> int:
        return os.getpid()

    def process(self, unit: dict[str, Any], start: float | None, end: float | None) -> dict[str, Any]:
        from ..errors import CamstreamError
        from ..paths import claim, publish
        from ..runner import run

        root = Path(unit["outdir"]) / STAGING
        root.mkdir(exist_ok=True)
        attempt = _count_attempt(root, unit["id"])
        work = Path(tempfile.mkdtemp(prefix=f"{unit['id']}.", dir=root))
        (work / "pid").write_text(str(os.getpid()))
        staged = work / Path(unit["output"]).name
        result: dict[str, Any] = {"id": unit["id"], "input": unit["input"], "attempts": attempt,
                                  "worker": f"{socket.gethostname()}:{os.getpid()}"}
        last = [0.0]

        def progress(written: int, total: int | None) -> None:
            now = time.monotonic()
            if self.board is not None and now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                self.board.update.remote(unit["id"], attempt, written, total)

        final, report_path = Path(unit["output"]), Path(unit["report"])
        overwrite = bool(unit.get("overwrite", False))
        try:
            # a second batch writing the same output now is refused, not interleaved with this one
            with claim([final, report_path]):
                report = run(unit["input"], str(staged), self.config, start=start, end=end,
                             report_path=str(work / "report.json"), progress=False, on_frame=progress,
                             inputs=unit.get("inputs") or [unit["input"]])
                if report.status not in ("ok", "partial") or not staged.exists():
                    shutil.rmtree(work, ignore_errors=True)
                    return {**result, "status": "error", "error": report.error or f"run ended {report.status}", "exit_code": 1}
                _replace(staged, final, overwrite)
                report.output = str(final)
                data = json.loads(report.to_json())
                data["attempts"] = attempt
                tmp = work / "report.final.json"
                tmp.write_text(json.dumps(data, indent=2) + "\n")
                publish(tmp, report_path, overwrite)
        except CamstreamError as exc:  # bad input, unwritable output...: the same again on a retry
            shutil.rmtree(work, ignore_errors=True)
            return {**result, "status": "error", "error": str(exc), "exit_code": exc.exit_code}
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise  # internal: Ray retries it (retry_exceptions)
        shutil.rmtree(work, ignore_errors=True)
        (root / f"{unit['id']}.attempts").unlink(missing_ok=True)
        return {**result, "status": report.status, "output": str(final), "report": data}
