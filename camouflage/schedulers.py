"""The samplers Base and Light offer (``base.scheduler``, ``light.scheduler``), by their
config names, each built from the SD1.5 scheduler config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,
    EulerAncestralDiscreteScheduler,
)

SCHEDULERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    # DPM++ SDE Karras, the paper's sampler (needs torchsde; slow on CPU).
    "dpmpp_sde_karras": lambda c: DPMSolverSDEScheduler.from_config(c, use_karras_sigmas=True),
    "dpmpp_2m_sde_karras": lambda c: DPMSolverMultistepScheduler.from_config(c, algorithm_type="sde-dpmsolver++", use_karras_sigmas=True),
    "dpmpp_2m_karras": lambda c: DPMSolverMultistepScheduler.from_config(c, use_karras_sigmas=True),
    "ddim": lambda c: DDIMScheduler.from_config(c),
    "euler_a": lambda c: EulerAncestralDiscreteScheduler.from_config(c),
}
