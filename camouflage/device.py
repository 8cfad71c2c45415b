"""torch device and dtype from ``models.device`` / ``models.dtype``."""

from __future__ import annotations

import warnings

import torch

from streamer.errors import ConfigError

# DPM++ SDE: torchsde's Brownian interval compares float times that the Karras schedule
# rounds a hair past its end ("Should have tb<=t1 but got tb=4.1166982 and t1=4.1166981");
# harmless, and one such line per run would read like a failure.
warnings.filterwarnings("ignore", message=r"Should have t[ab]<=t1 but got", category=UserWarning, module="torchsde")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: not a torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here (use cpu or auto)")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto": fp16 on GPU, fp32 on CPU (CPU half precision is slower, not faster)."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[name]
    except KeyError:
        raise ConfigError(f"models.dtype {name!r}: use auto, float32, float16 or bfloat16") from None


def brownian_seed(generator: torch.Generator | list[torch.Generator] | None) -> int | list[int] | None:
    """DPM++ SDE's Brownian tree seed(s), drawn from our generator(s)."""
    if generator is None:
        return None
    if isinstance(generator, list):
        return [int(torch.randint(0, 2**31 - 1, (1,), generator=g)) for g in generator]
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


_STREAMS: dict[tuple[str, bool], torch.cuda.Stream] = {}


def worker_stream(device: torch.device, high_priority: bool = False):  # noqa: ANN201 - a context manager
    """The CUDA stream discipline of the video method's workers: each worker thread renders
    on its own stream (this frame's Light on a high-priority one, background Base keyframes
    on a normal one), so a keyframe's kernels queue behind Light's instead of beside them on
    the default stream, and leaves only after its stream is done (its results are read on
    another thread). On a CPU: nothing to do."""
    import contextlib

    if device.type != "cuda":
        return contextlib.nullcontext()
    key = (str(device), high_priority)
    if key not in _STREAMS:  # one per worker kind, for the whole run
        _STREAMS[key] = torch.cuda.Stream(device=device, priority=-1 if high_priority else 0)
    stream = _STREAMS[key]

    @contextlib.contextmanager
    def on_stream():  # noqa: ANN202
        stream.wait_stream(torch.cuda.current_stream(device))  # weights moved or written before: visible here
        with torch.cuda.stream(stream):
            yield stream
        stream.synchronize()

    return on_stream()
