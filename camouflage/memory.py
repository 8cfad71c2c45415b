"""Out of GPU memory: what a render does before it gives up to the fallback cover.

1. ``torch.cuda.empty_cache()`` and the same work in halves, down to one crop at a time
   (activations scale with the batch; the weights do not);
2. one crop still does not fit: the pipelines' ``enable_model_cpu_offload`` (each model on
   the GPU only while it runs; slower, but it renders), once per run, said in the log;
3. still out of memory: the error goes up and the caller covers the regions with the
   fallback, as for any failure. The original face is never the answer.

Only out-of-memory errors are retried; any other error goes up at once.

>>> policy = MemoryPolicy(offload=lambda: [p.enable_model_cpu_offload() for p in pipes])  # doctest: +SKIP
>>> images = policy.run(lambda chunk: render(chunk), crops)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

log = logging.getLogger("camstream")
T = TypeVar("T")
R = TypeVar("R")


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or other accelerator) out-of-memory error, by type or by torch's message."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is there whenever a generator runs
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class MemoryPolicy:
    """Runs ``work(items) -> one result per item`` with the retries above. ``offload()`` is
    step 2 (None: there is no such step, e.g. on a CPU)."""

    def __init__(self, offload: Callable[[], None] | None = None) -> None:
        self.offload = offload
        self.offloaded = False
        self.retries = 0  # smaller batches tried after an out-of-memory error (the run report)
        self._lock = threading.Lock()  # two workers (Light, background keyframes) may hit it together

    def run(self, work: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R]:
        try:
            return list(work(items))
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            empty_cache()
            if len(items) > 1:
                self.retries += 1
                half = (len(items) + 1) // 2
                log.warning("out of GPU memory with %d crops: trying %d at a time", len(items), half)
                return self.run(work, items[:half]) + self.run(work, items[half:])
            if not self._offload():
                raise
        return list(work(items))  # one crop, models offloaded: the last try (its error goes up)

    def _offload(self) -> bool:
        with self._lock:
            if self.offloaded:
                return False  # offloading did not save it before: do not try again
            if self.offload is None:
                return False
            log.warning(
                "out of GPU memory with one crop: moving each model to the GPU only while it runs "
                "(enable_model_cpu_offload; slower) for the rest of the run"
            )
            self.offload()
            self.offloaded = True
            empty_cache()
            return True


def offload_models(*pipes) -> Callable[[], None] | None:  # noqa: ANN002 - DiffusionPipelines
    """The policy's last step before the fallback: diffusers' model CPU offload of every
    pipeline on a GPU (None on a CPU: nothing to offload to)."""
    if not any(p.device.type == "cuda" for p in pipes):
        return None

    def offload() -> None:
        for pipe in pipes:
            pipe.enable_model_cpu_offload(device=pipe.device)

    return offload
