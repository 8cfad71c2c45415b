"""The two guidance formulas of CAMOUFLaGE, in one place, for Base and Light alike.

Text (and image-prompt) classifier-free guidance, then the paper's negative identity
guidance on top of it (arXiv 2403.14790, Sec. 3)::

    eps_pos = eps_uncond + g * (eps_cond - eps_uncond)
    eps     = eps_neg + a_s * (eps_pos - eps_neg)

``eps_neg`` is the prediction conditioned on the *original* identity: Base's
identity-function (IDF) ControlNet fed the original's latents, or Light's IP-Adapter fed
the original face's embedding. a_s = 0 reproduces the original, 1 follows the positive
branch alone, > 1 pushes away from the original. g = 1 (or a_s = 1) drops a branch.

The number of U-Net branches a step runs is :func:`unet_branches`: 1, plus 1 for CFG,
plus 1 for the identity push; all of a step's branches go through one batched U-Net call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def classifier_free_guidance(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """eps_uncond + g * (eps_cond - eps_uncond) (Ho & Salimans)."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def identity_guidance(eps_pos: torch.Tensor, eps_neg: torch.Tensor, anonymization_scale: float) -> torch.Tensor:
    """The paper's negative identity guidance: eps = eps_neg + a_s * (eps_pos - eps_neg)."""
    return eps_neg + anonymization_scale * (eps_pos - eps_neg)


def unet_branches(guidance_scale: float, identity_push: bool) -> int:
    """U-Net samples per image per denoising step: conditional, + unconditional (CFG), + original identity."""
    return 1 + (guidance_scale > 1.0) + bool(identity_push)
