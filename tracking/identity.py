"""Fake identities that live as long as their track: the IdentityBank and the keyframe policy.

Every tracked person gets one :class:`Identity`: a seed (the same initial noise for the
whole life of the track, so the generator starts from the same latents every frame),
the anonymized keyframe crop and its IP-Adapter embedding (the face Light keeps
drawing), and the latest attribute map and landmarks. The bank never links two tracks:
a person who leaves and comes back under a new track ID gets a new fake face. Linking
needs a re-identification of the *original* faces, and a wrong link would give two
people one face (or, worse, tell a viewer that two appearances are one person); a
second fake face for one person is the safe error.

The :class:`KeyframePolicy` says when an identity needs a new keyframe (CAMOUFLaGE-Base
on its crop): at track birth, at a scene cut, after a large pose or expression change
(landmarks, normalised to the face box, moved by more than ``pose_change`` of the box
size since the keyframe), or every ``every`` frames.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Identity:
    """One track's fake person."""

    track_id: int
    seed: int
    born: int  # frame index of the track's first anonymized frame
    last_seen: int
    keyframe_index: int | None = None  # frame of the latest keyframe (None: needs one)
    keyframe_crop: np.ndarray | None = None  # the anonymized crop (model resolution, RGB uint8)
    embedding: Any = None  # IP-Adapter (FaRL) embedding of keyframe_crop's face (torch tensor)
    keyframe_landmarks: np.ndarray | None = None  # normalised landmarks at the keyframe
    landmarks: np.ndarray | None = None  # latest normalised landmarks
    attribute_map: np.ndarray | None = None  # latest (41, H, W) map
    latest_crop: np.ndarray | None = None  # the latest generated crop (Base or Light), for late frames
    latest_index: int | None = None  # its frame
    keyframes: int = 0
    frames: int = 0


def normalised_landmarks(landmarks: np.ndarray | None, box: np.ndarray) -> np.ndarray | None:
    """Landmarks in box units (0..1 across the box): invariant to motion and scale."""
    if landmarks is None:
        return None
    lm = np.asarray(landmarks, np.float32).reshape(-1, 2)
    if not np.isfinite(lm).all():
        return None
    x1, y1, x2, y2 = (float(v) for v in box)
    size = max(x2 - x1, y2 - y1, 1e-6)
    return (lm - np.array([x1, y1], np.float32)) / size


@dataclass
class KeyframePolicy:
    """When an identity gets a new Base keyframe (all switchable; see the module docstring)."""

    every: int = 48  # frames since the last keyframe; 1 = every frame is a keyframe
    on_birth: bool = True
    on_scene_cut: bool = True
    pose_change: float = 0.2  # mean landmark displacement, in face-box sizes; <= 0: off

    def reason(self, identity: Identity, frame_index: int, scene_cut: bool, landmarks: np.ndarray | None) -> str | None:
        """``"birth" | "scene_cut" | "pose" | "interval"`` or None (no keyframe needed)."""
        if identity.keyframe_index is None:
            # a track's first frame, or an earlier keyframe that never arrived (late or failed)
            return "birth" if self.on_birth or identity.keyframes == 0 else "interval"
        if scene_cut and self.on_scene_cut:
            return "scene_cut"
        if (self.pose_change > 0 and landmarks is not None and identity.keyframe_landmarks is not None
                and landmarks.shape == identity.keyframe_landmarks.shape):
            moved = float(np.linalg.norm(landmarks - identity.keyframe_landmarks, axis=1).mean())
            if moved > self.pose_change:
                return "pose"
        if self.every > 0 and frame_index - identity.keyframe_index >= self.every:
            return "interval"
        return None


@dataclass
class IdentityBank:
    """Track ID -> :class:`Identity`, with one distinct seed per track.

    ``seed`` is the run's seed: the same run seed and track ID give the same fake person
    run to run. Identities not seen for ``forget_after`` frames are dropped (their track
    IDs never come back: ByteTrack's IDs only grow), and at most ``capacity`` are kept.
    """

    seed: int = 0
    forget_after: int = 300
    capacity: int = 256
    identities: OrderedDict[int, Identity] = field(default_factory=OrderedDict)
    _used_seeds: set[int] = field(default_factory=set)
    created: int = 0

    def seed_for(self, track_id: int) -> int:
        """A seed drawn from (run seed, track ID), distinct from every seed given so far."""
        candidates = np.random.SeedSequence([int(self.seed) & 0xFFFFFFFF, max(track_id, 0) + 1]).generate_state(64)
        for value in (int(v) & 0x7FFFFFFF for v in candidates):
            if value not in self._used_seeds:
                return value
        raise RuntimeError("no free seed")  # 64 collisions in 2**31: not on this planet

    def get(self, track_id: int, frame_index: int) -> Identity:
        """The track's identity, created (with a new seed) on its first call."""
        identity = self.identities.get(track_id)
        if identity is None:
            seed = self.seed_for(track_id)
            self._used_seeds.add(seed)
            identity = self.identities[track_id] = Identity(track_id, seed, born=frame_index, last_seen=frame_index)
            self.created += 1
        self.identities.move_to_end(track_id)
        identity.last_seen = frame_index
        self._forget(frame_index)
        return identity

    def _forget(self, frame_index: int) -> None:
        stale = [tid for tid, ident in self.identities.items() if frame_index - ident.last_seen > self.forget_after]
        for tid in stale:
            del self.identities[tid]
        while len(self.identities) > self.capacity:
            self.identities.popitem(last=False)

    def __contains__(self, track_id: int) -> bool:
        return track_id in self.identities

    def __len__(self) -> int:
        return len(self.identities)
