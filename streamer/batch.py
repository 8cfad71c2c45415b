"""``camstream run A B DIR ...``: every input in turn, one line each at the end, one exit code.

Every input and output is checked first (cheap checks, no model loaded); an input that
fails them is reported and skipped, the others run. A failure that every later input
would repeat (bad config, models missing) or an interrupt stops the batch. The exit code
is the highest of the inputs' codes (0 when all succeeded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CamstreamError, OutputError
from .paths import Job, check_input, check_output
from .words import plural

log = logging.getLogger("camstream")

STOPS_THE_BATCH = {2, 5, 130, 143}  # the same for every input, or the user asked to stop


@dataclass
class Outcome:
    job: Job
    code: int
    line: str


def prepare(job: Job) -> None:
    """Creates the output folder that ``-o`` named (its parent exists: checked)."""
    if job.folder:
        try:
            Path(job.folder).mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{job.folder}: cannot create the output folder ({exc.strerror})") from None
    if job.report:
        try:
            Path(job.report).parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{Path(job.report).parent}: cannot create the report folder ({exc.strerror})") from None


def describe(report: Any) -> str:  # noqa: ANN401 - a RunReport (not imported: keeps this module light)
    text = f"{report.status}, {plural(report.frames_out, 'frame')}, {plural(len(report.tracks), 'track')}"
    skipped = len(report.source.get("skipped_files") or [])
    if report.decode_errors:
        text += f", {plural(report.decode_errors, 'decode error')}"
    if skipped:
        text += f", {plural(skipped, 'file')} skipped"
    return text


def run_jobs(jobs: list[Job], run_one: Callable[[Job], Any], *, overwrite: bool = False,
             inputs: Sequence[str] | None = None) -> int:
    """Runs every job; raises the error itself when there is one input (the CLI prints it).
    ``inputs``: every input of the run; no job writes over any of them."""
    inputs = list(inputs) if inputs is not None else [job.input for job in jobs]
    if len(jobs) == 1:
        job = jobs[0]
        check_input(job.input)
        check_output(job, overwrite, inputs)
        prepare(job)
        report = run_one(job)
        return 0 if report.status in ("ok", "partial") else 1
    outcomes: list[Outcome] = []
    ready: list[Job] = []
    for job in jobs:
        try:
            check_input(job.input)
            check_output(job, overwrite, inputs)
        except CamstreamError as exc:
            log.error("error: %s", exc)
            outcomes.append(Outcome(job, exc.exit_code, f"error: {exc} (exit {exc.exit_code})"))
        else:
            ready.append(job)
    stopped: str | None = None
    for job in ready:
        if stopped:
            outcomes.append(Outcome(job, 0, f"not run ({stopped})"))
            continue
        try:
            prepare(job)
            report = run_one(job)
            code = 0 if report.status in ("ok", "partial") else 1
            outcomes.append(Outcome(job, code, f"-> {report.output or job.output}: {describe(report)}"))
        except CamstreamError as exc:
            log.error("error: %s: %s", job.input, exc)
            outcomes.append(Outcome(job, exc.exit_code, f"error: {exc} (exit {exc.exit_code})"))
            if exc.exit_code in STOPS_THE_BATCH:
                stopped = "stopped after the error above"
        except KeyboardInterrupt:
            outcomes.append(Outcome(job, 130, "interrupted (exit 130)"))
            stopped = "interrupted"
        except Exception as exc:  # noqa: BLE001 - one input's bug must not lose the others' summary
            log.debug("internal error", exc_info=True)
            outcomes.append(Outcome(job, 1, f"internal error: {type(exc).__name__}: {exc} (exit 1)"))
    order = {id(job): i for i, job in enumerate(jobs)}
    outcomes.sort(key=lambda o: order[id(o.job)])
    failed = [o for o in outcomes if o.code or o.line.startswith("not run")]
    worst = max((o.code for o in outcomes), default=0)
    log.info("%s: %d done, %d failed or not run%s", plural(len(jobs), "input"), len(jobs) - len(failed), len(failed),
             f" (exit {worst})" if worst else "")
    for o in outcomes:
        log.info("  %s %s", o.job.input, o.line) if o.line.startswith("->") else log.info("  %s: %s", o.job.input, o.line)
    return worst
