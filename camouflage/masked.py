"""The identity-blind start of both pipelines (camouflage/blind.py): the face from pure
noise, the context re-imposed at every step, as diffusers' inpainting pipeline does with a
plain 4-channel U-Net (``StableDiffusionInpaintPipeline``, ``num_channels_unet == 4``)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def as_mask(mask: np.ndarray | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """(B, 1, H, W) float32 in [0, 1] from (H, W), (B, H, W) or (B, 1, H, W)."""
    m = torch.as_tensor(np.asarray(mask, np.float32) if not isinstance(mask, torch.Tensor) else mask).float()
    while m.ndim < 4:
        m = m[None] if m.ndim == 2 else m[:, None]
    if m.shape[0] == 1 and batch > 1:
        m = m.repeat(batch, 1, 1, 1)
    return m.to(device)


def at_resolution(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``mask`` (1 on the face) at ``like``'s spatial size: 1 in every cell the face touches."""
    return F.adaptive_max_pool2d(mask.float(), like.shape[-2:]).to(like.dtype)


def masked_start(
    scheduler,
    init: torch.Tensor,
    noise: torch.Tensor,
    first: torch.Tensor,  # noqa: ANN001
    face: torch.Tensor,
) -> torch.Tensor:
    """The first latents: the face (``face``, latent resolution) pure noise at the scheduler's
    initial sigma (strength 1), the context ``init`` noised to the first timestep."""
    return face * noise * scheduler.init_noise_sigma + (1 - face) * scheduler.add_noise(init, noise, first)


def keep_context(
    scheduler,
    latents: torch.Tensor,
    init: torch.Tensor,
    noise: torch.Tensor,  # noqa: ANN001
    following: torch.Tensor | None,
    face: torch.Tensor,
) -> torch.Tensor:
    """After a step: the context back at the noise level of the ``following`` timestep
    (the clean context after the last step, ``following`` None); the face as denoised."""
    context = init if following is None else scheduler.add_noise(init, noise, following)
    return (1 - face) * context + face * latents
