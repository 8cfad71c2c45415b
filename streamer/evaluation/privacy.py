"""Privacy: is the face still there, and is it still the same person?

* Leak: a face the independent detector finds in the original that it still finds at
  the same place in the output (:func:`~.faces.same_place`). Counted per face, per
  frame and per track ("tracks with >= 1 leaked frame").
* Re-identification: the dlib embedding of the output at the original's box and
  landmarks against the original's (distance < 0.6 = same person), and open-set
  gallery top-1 over every identity in the clip. Faces the embedding cannot tell from
  their own erased patch are left out and counted (:func:`~.faces.identifiable`): on
  Megamind.avi a dark background face is within 0.55-0.6 of a black disc.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .faces import SAME_PERSON


class Gallery:
    """Every identity of the clip, as the strongest attacker would hold it: all the
    original's sampled face embeddings, labelled by person.

    Tracks whose mean embeddings are closer than 0.6 are one person (seen in several
    shots). Top-1 is open set: the nearest gallery face must be the right person and
    closer than 0.6, so a clip with one person does not make every cover a "match".
    """

    def __init__(self) -> None:
        self._embeddings: dict[int, list[np.ndarray]] = {}
        self.identity_of: dict[int, int] = {}
        self.identities = 0
        self.embeddings = np.zeros((0, 128), np.float32)
        self.labels = np.zeros(0, int)

    def add(self, track_id: int, embedding: np.ndarray) -> None:
        self._embeddings.setdefault(track_id, []).append(embedding)

    def build(self) -> None:
        members: list[list[int]] = []
        means: list[np.ndarray] = []
        for track_id in sorted(self._embeddings):
            mean = np.mean(self._embeddings[track_id], axis=0)
            if means:
                d = np.linalg.norm(np.array(means) - mean, axis=1)
                k = int(np.argmin(d))
                if d[k] < SAME_PERSON:
                    members[k].append(track_id)
                    means[k] = np.mean([e for t in members[k] for e in self._embeddings[t]], axis=0)
                    continue
            members.append([track_id])
            means.append(mean)
        self.identity_of = {t: k for k, group in enumerate(members) for t in group}
        self.identities = len(members)
        tracks = sorted(self._embeddings)
        self.embeddings = np.array([e for t in tracks for e in self._embeddings[t]], np.float32).reshape(-1, 128)
        self.labels = np.array([self.identity_of[t] for t in tracks for _ in self._embeddings[t]], int)

    def top1(self, track_id: int, embedding: np.ndarray) -> bool:
        """The nearest face of the gallery is this person's, and near enough to claim it."""
        if track_id not in self.identity_of or not len(self.embeddings):
            return False
        d = np.linalg.norm(self.embeddings - embedding, axis=1)
        k = int(np.argmin(d))
        return self.labels[k] == self.identity_of[track_id] and d[k] < SAME_PERSON


@dataclass
class PrivacyResult:
    faces: int = 0  # faces the independent detector found in the original (paired frames)
    faces_leaked: int = 0
    leak_rate: float = 0.0
    frames_with_faces: int = 0
    frames_leaked: int = 0
    tracks: int = 0
    tracks_leaked: int = 0
    track_leak_rate: float = 0.0
    reid_faces: int = 0  # faces embedded (every --reid-every frame)
    reid_faces_unidentifiable: int = 0  # left out: as close to their own erased patch as to themselves
    reid_rate: float = 0.0  # output within 0.6 of the original face
    gallery_top1: float = 0.0  # output's nearest identity is the right one (open set)
    median_distance: float | None = None
    identities: int = 0
    leaked_frames: list[int] = field(default_factory=list)  # first 200
    leaked_tracks: list[dict] = field(default_factory=list)  # id, first/last frame, frames leaked
    # The reference set (several detectors, run hard) and the pixel measure: a face is
    # exposed when the output replaced less than 90 % of its inner box, bare under 50 %.
    reference_detectors: list[str] = field(default_factory=list)
    reference_faces: int = 0
    reference_exposed: int = 0
    reference_bare: int = 0
    reference_faces_24: int = 0  # faces of 24 px or more ...
    reference_exposed_24: int = 0  # ... and those exposed
    reference_exposed_examples: list = field(default_factory=list)  # (frame, fraction, box), first 50


class PrivacyMeter:
    """Accumulates one output's leaks and embeddings, frame by frame."""

    def __init__(self) -> None:
        self.faces = self.faces_leaked = self.frames_with_faces = 0
        self.leaked_frames: list[int] = []
        self.tracks: dict[int, dict] = {}
        self._reid: list[tuple[int, float, np.ndarray]] = []  # track, distance, output embedding

    def add_frame(self, frame_index: int, track_ids: np.ndarray, leaked: list[bool]) -> None:
        if not len(track_ids):
            return
        self.frames_with_faces += 1
        self.faces += len(track_ids)
        self.faces_leaked += sum(leaked)
        if any(leaked):
            self.leaked_frames.append(frame_index)
        for track_id, leak in zip(track_ids.tolist(), leaked, strict=True):
            t = self.tracks.setdefault(track_id, {"track": track_id, "first_frame": frame_index, "frames": 0, "frames_leaked": 0})
            t["last_frame"] = frame_index
            t["frames"] += 1
            t["frames_leaked"] += int(leak)

    def add_embeddings(self, track_ids: np.ndarray, original: np.ndarray, output: np.ndarray) -> None:
        for track_id, a, b in zip(track_ids.tolist(), original, output, strict=True):
            self._reid.append((track_id, float(np.linalg.norm(a - b)), b))

    def result(self, gallery: Gallery) -> PrivacyResult:
        leaked_tracks = [t for t in self.tracks.values() if t["frames_leaked"]]
        distances = np.array([d for _, d, _ in self._reid])
        r = PrivacyResult(
            faces=self.faces,
            faces_leaked=self.faces_leaked,
            leak_rate=self.faces_leaked / self.faces if self.faces else 0.0,
            frames_with_faces=self.frames_with_faces,
            frames_leaked=len(self.leaked_frames),
            tracks=len(self.tracks),
            tracks_leaked=len(leaked_tracks),
            track_leak_rate=len(leaked_tracks) / len(self.tracks) if self.tracks else 0.0,
            reid_faces=len(self._reid),
            identities=gallery.identities,
            leaked_frames=self.leaked_frames[:200],
            leaked_tracks=leaked_tracks,
        )
        if len(distances):
            r.reid_rate = float((distances < SAME_PERSON).mean())
            r.median_distance = float(np.median(distances))
            r.gallery_top1 = float(np.mean([gallery.top1(t, e) for t, _, e in self._reid]))
        return r
