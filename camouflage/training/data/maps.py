"""Light's 41-channel attribute maps, painted per batch on the training device.

The same map as :func:`camouflage.light.attribute_map.build_attribute_map` (what inference
paints with NumPy): channels 0-39 the 40 FACER probabilities of a face flat over its box,
channel 40 its 5 keypoints as discs; each pixel belongs to one face, the larger box wins
(equal areas: the one listed last). Only the attributes travel from the shards; a
41 x R x R map never sits in host memory or on the device beyond its batch.
"""

from __future__ import annotations

import torch

from ...models.names import MAP_CHANNELS


def paint_maps(boxes: torch.Tensor, keypoints: torch.Tensor, attributes: torch.Tensor, faces: torch.Tensor,
               size: int, keypoint_radius: float = 0.04) -> torch.Tensor:
    """(B, 41, size, size) maps on ``boxes``' device.

    Args:
        boxes: (B, F, 4) xyxy in map pixels; keypoints: (B, F, 5, 2); attributes: (B, F, 40);
        faces: (B,) how many of the F slots hold a face.
    """
    b, f = boxes.shape[:2]
    device = boxes.device
    if f == 0:
        return torch.zeros(b, MAP_CHANNELS, size, size, device=device)
    grid = torch.arange(size, device=device, dtype=torch.float32)
    valid = torch.arange(f, device=device)[None] < faces.to(device)[:, None]  # (B, F)
    x1, y1, x2, y2 = boxes.float().unbind(-1)  # (B, F)
    inside_x = (grid >= x1.floor()[..., None]) & (grid < x2.ceil()[..., None])  # (B, F, W)
    inside_y = (grid >= y1.floor()[..., None]) & (grid < y2.ceil()[..., None])  # (B, F, H)
    inside = inside_y[..., :, None] & inside_x[..., None, :] & valid[..., None, None]  # (B, F, H, W)
    area = (x2 - x1).clamp_min(0) * (y2 - y1).clamp_min(0)
    # rank of each face in the painting order (smallest first, ties by index): the highest rank wins
    order = torch.argsort(torch.where(valid, area, -1.0), dim=1, stable=True)
    rank = torch.argsort(order, dim=1, stable=True).float()  # (B, F)
    score = torch.where(inside, rank[..., None, None], torch.full_like(rank[..., None, None], -1.0))
    best, owner = score.max(dim=1)  # (B, H, W)
    owned = best >= 0
    mine = (owner[:, None] == torch.arange(f, device=device)[None, :, None, None]) & owned[:, None]  # (B, F, H, W)
    attr = torch.einsum("bfhw,bfc->bchw", mine.float(), attributes.float().to(device))
    side = torch.maximum(x2 - x1, y2 - y1)
    radius = torch.clamp(torch.round(keypoint_radius * side), min=1.0)  # (B, F)
    centres = torch.round(keypoints.float().to(device))  # (B, F, 5, 2)
    dots = torch.zeros(b, f, size, size, dtype=torch.bool, device=device)
    for k in range(centres.shape[2]):  # one keypoint at a time: (B, F, H, W) at most
        dx = (grid[None, None, :] - centres[:, :, k, 0, None]) ** 2  # (B, F, W)
        dy = (grid[None, None, :] - centres[:, :, k, 1, None]) ** 2  # (B, F, H)
        dots |= (dy[..., :, None] + dx[..., None, :]) <= radius[..., None, None] ** 2
    dots = (dots & mine).any(dim=1).float()  # (B, H, W)
    return torch.cat([attr, dots[:, None]], dim=1)
