"""What each output container can hold, and the source's other streams carried into it.

Every container/codec pair is decided here before the file's header is written: a
stream is copied when the container holds its codec, transcoded when it does not
(AAC for mp4/mov/mkv, Opus for webm, AC-3 for avi), or dropped with the reason in the
run report. Only the first video stream is anonymized: other video streams, data and
attachments (which may hold pictures) are never copied.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from .errors import ConfigError, OutputError
from .sources import FORWARD_JUMP, JUMP_FORMATS
from .validate import X264_PRESETS

log = logging.getLogger(__name__)

_PCM = frozenset({"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_f32le", "pcm_u8"})
# Fragmented MP4/MOV: the index is written with every fragment (at least once a second),
# so a file cut short by a crash, SIGKILL or a full disk plays up to its last fragment
# (delay_moov: AC-3 and E-AC-3 need their first packet before the header can be written).
_FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+delay_moov+default_base_moof", "frag_duration": "1000000"}
_CLUSTERS = {"cluster_time_limit": "1000"}  # Matroska: a cluster (playable unit) per second


@dataclass(frozen=True)
class ContainerSpec:
    video: str  # encoder
    audio: frozenset[str]  # audio codecs copied as they are
    audio_encoder: str  # what any other audio is transcoded to
    subtitles: frozenset[str]  # subtitle codecs copied as they are
    options: dict[str, str] = field(default_factory=dict)  # muxer options
    cfr: bool = False  # AVI: one time-base tick per frame, no B-frames (no presentation times)


CONTAINERS: dict[str, ContainerSpec] = {
    ".mp4": ContainerSpec("libx264", frozenset({"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"}), "aac",
                          frozenset({"mov_text"}), _FRAGMENTED),
    ".mov": ContainerSpec("libx264", frozenset({"aac", "mp3", "ac3", "eac3", "alac"}) | _PCM, "aac",
                          frozenset({"mov_text"}), _FRAGMENTED),
    ".mkv": ContainerSpec("libx264", frozenset({"aac", "mp2", "mp3", "ac3", "eac3", "dts", "truehd", "opus", "vorbis", "flac", "alac"}) | _PCM,
                          "aac", frozenset({"subrip", "ass", "ssa", "webvtt", "dvd_subtitle", "hdmv_pgs_subtitle", "dvb_subtitle"}), _CLUSTERS),
    ".webm": ContainerSpec("libvpx-vp9", frozenset({"opus", "vorbis"}), "libopus", frozenset({"webvtt"}), _CLUSTERS),
    # AVI times compressed audio by its frame size, which a copied stream lacks here (PyAV's
    # template): copied AC-3 came out at a fifth of its length. Only PCM is copied.
    ".avi": ContainerSpec("libx264", frozenset({"pcm_s16le", "pcm_u8"}), "ac3", frozenset(), cfr=True),
}
SUFFIXES = ", ".join(CONTAINERS)
_RATES = {"libopus": (8000, 12000, 16000, 24000, 48000), "ac3": (32000, 44100, 48000)}


def check_encoder_options(codec: str, crf: int, preset: str) -> None:
    """Bad quality settings are bad usage (exit 2), found before any file is created."""
    top = 63 if codec == "libvpx-vp9" else 51
    if not isinstance(crf, int) or not 0 <= crf <= top:
        raise ConfigError(f"output.crf: {crf!r} is outside 0-{top} for {codec}")
    if preset not in X264_PRESETS:
        raise ConfigError(f"output.preset: {preset!r} is not one of {', '.join(X264_PRESETS)}")


def _layout(cc: av.AudioCodecContext) -> str:
    name = cc.layout.name if cc.layout is not None else ""
    if name and "channels" not in name:
        return name
    return {1: "mono", 2: "stereo", 6: "5.1"}.get(cc.channels, "stereo")


class StreamCarrier:
    """Copies (or transcodes) the source's audio and subtitle streams into the output.

    The source is read with a second demuxer and its packets are interleaved with the
    video by time (:meth:`pump`), so the pipeline never carries them. ``which`` is
    ``all`` (every audio and subtitle stream), ``first`` (the first audio stream) or
    ``none``. :attr:`notes` says, per source stream, what became of it.
    """

    def __init__(self, source: str, out: av.container.OutputContainer, spec: ContainerSpec, suffix: str, *,
                 which: str = "all", start: float = 0.0, end: float | None = None, keep_metadata: bool = False,
                 video_index: int | None = None) -> None:
        self.input = av.open(source, metadata_errors="replace")
        self.out, self.start, self.end = out, start, end
        self.notes: list[dict[str, Any]] = []
        self.routes: dict[int, tuple[Any, bool]] = {}  # input index -> (output stream, copied)
        # the stream the source anonymizes (not a cover picture that comes first)
        first_video = video_index if video_index is not None else (self.input.streams.video[0].index if self.input.streams.video else -1)
        first_audio = True
        try:
            for s in self.input.streams:
                kind, codec = s.type, s.codec_context.codec.canonical_name if s.codec_context is not None else "unknown"
                note: dict[str, Any] = {"index": s.index, "type": kind, "codec": codec}
                self.notes.append(note)
                if s.index == first_video:
                    note["action"] = "anonymized"
                elif kind == "audio" and (which == "all" or (which == "first" and first_audio)):
                    first_audio = False
                    self._add_audio(s, spec, note)
                elif kind == "audio":
                    note.update(action="dropped", reason=f"--audio-streams {which}")
                elif kind == "subtitle" and which == "all" and codec in spec.subtitles:
                    self.routes[s.index] = (self._copy(s, keep_metadata), True)
                    note["action"] = "copied"
                elif kind == "subtitle":
                    reason = f"{suffix} cannot hold {codec} subtitles" if which == "all" else f"--audio-streams {which}"
                    note.update(action="dropped", reason=reason)
                elif kind == "video":
                    note.update(action="dropped", reason="only the main video stream is anonymized (cover pictures and other videos are dropped)")
                else:
                    note.update(action="dropped", reason=f"{kind} streams are not copied (they may hold pictures or personal data)")
                if note["action"] != "anonymized":
                    log.debug("source stream %d (%s %s): %s%s", s.index, kind, codec, note["action"],
                              f" ({note['reason']})" if "reason" in note else "")
        except BaseException:
            self.input.close()
            raise
        self.streams = [self.input.streams[i] for i in self.routes]
        self._clock: dict[int, tuple[int, int | None, int | None]] = {}  # per stream: (offset, last time, end)
        self._forward_jumps = self.input.format.name.split(",")[0] in JUMP_FORMATS
        self.packets: Iterator[av.Packet] | None = self.input.demux(self.streams) if self.streams else None
        self.done = self.packets is None
        self._pending: av.Packet | None = None
        if self.start and self.streams:
            try:  # to the packet before start; earlier ones are skipped in pump()
                self.input.seek(int(self.start * av.time_base), backward=True)
                self.packets = self.input.demux(self.streams)
            except av.error.FFmpegError:
                pass

    def _copy(self, s: av.stream.Stream, keep_metadata: bool) -> Any:
        out = self.out.add_stream_from_template(s)
        language = s.metadata.get("language")
        if not keep_metadata:  # stream tags can carry dates and devices too; the language stays
            for key in list(out.metadata):
                del out.metadata[key]
        if language:
            out.metadata["language"] = language
        return out

    def _add_audio(self, s: av.stream.Stream, spec: ContainerSpec, note: dict[str, Any]) -> None:
        cc = s.codec_context
        if cc is None:
            note.update(action="dropped", reason="no decoder for this audio codec")
            return
        # ADTS AAC (MPEG-TS, .aac) has its config in every packet, MP4 and Matroska need it in
        # the header, which is written before the first packet: copied, the muxer refused the
        # packets ("Operation not permitted", blamed on the output). It is re-encoded instead.
        adts = cc.codec.canonical_name == "aac" and not cc.extradata
        if cc.codec.canonical_name in spec.audio and not adts:
            self.routes[s.index] = (self._copy(s, False), True)
            note["action"] = "copied"
            return
        encoder = spec.audio_encoder
        rate = cc.sample_rate or 48000
        if encoder in _RATES and rate not in _RATES[encoder]:
            rate = 48000
        try:
            out = self.out.add_stream(encoder, rate=rate)
            out.layout = _layout(cc)
        except (av.error.FFmpegError, ValueError) as exc:
            note.update(action="dropped", reason=f"cannot transcode to {encoder} ({exc})")
            return
        if s.metadata.get("language"):
            out.metadata["language"] = s.metadata["language"]
        self.routes[s.index] = (out, False)
        why = "ADTS AAC (its config in-band) cannot be copied into the container's header" if adts \
            else f"the container cannot hold {cc.codec.canonical_name}"
        note.update(action=f"transcoded to {encoder}", reason=why)

    @property
    def has_streams(self) -> bool:
        return bool(self.routes)

    def pump(self, until: float | None) -> None:
        """Mux the other streams up to ``until`` seconds of output time (None: all)."""
        while not self.done:
            if self._pending is not None:
                packet, self._pending = self._pending, None
            else:
                try:
                    packet = next(self.packets)  # type: ignore[arg-type]
                except (StopIteration, av.error.FFmpegError):
                    self._finish()
                    return
            if packet.dts is None and packet.pts is None:
                continue  # the demuxer's final flush packets
            self._continue(packet)
            t = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
            # Priming packets (AAC, Opus pre-skip) have negative times: kept unless trimming.
            if self.start and t < self.start - 1e-6:
                continue
            if self.end is not None and t >= self.end:
                continue  # other streams may still have packets before the end
            if until is not None and t - self.start > until:
                self._pending = packet
                return
            self._write(packet)

    def _continue(self, packet: av.Packet) -> None:
        """Timestamps that restart (concatenated MPEG-TS: each part from 0) continue right
        after the stream's last packet, as the video's do (sources._Timeline): backwards,
        the muxer refused them ("Operation not permitted") and the run failed. Packets come
        in decode order, so any step back is a restart."""
        index, tb = packet.stream.index, packet.time_base
        ts = packet.dts if packet.dts is not None else packet.pts
        offset, last, end = self._clock.get(index, (0, None, None))
        value = ts + offset
        if last is not None and end is not None and (value < last or (self._forward_jumps and value > end + round(FORWARD_JUMP / tb))):
            offset += end - value
            value = end
        if offset:
            packet.pts = packet.pts + offset if packet.pts is not None else None
            packet.dts = packet.dts + offset if packet.dts is not None else None
        finish = value + (packet.duration or 0)
        self._clock[index] = (offset, value, finish if end is None else max(end, finish))

    def _write(self, packet: av.Packet) -> None:
        out, copied = self.routes[packet.stream.index]
        offset = self.start
        if copied:
            shift = int(round(offset / packet.time_base)) if offset else 0
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = out
            self.out.mux(packet)
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            return  # a damaged audio packet is skipped, not fatal
        for aframe in frames:
            if aframe.pts is not None and offset:
                aframe.pts -= int(round(offset / (aframe.time_base or Fraction(1, aframe.sample_rate))))
            for out_packet in out.encode(aframe):
                self.out.mux(out_packet)

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        for out, copied in self.routes.values():
            if not copied:
                for out_packet in out.encode(None):
                    self.out.mux(out_packet)

    def close(self) -> None:
        try:
            self._finish()
        finally:
            self.input.close()


def trim_fragments(path: Path) -> None:
    """Cut a fragmented MP4/MOV after its last complete fragment (a write that failed,
    e.g. on a full disk, leaves half a fragment that players would stumble on)."""
    size = path.stat().st_size
    good = offset = 0
    with open(path, "r+b") as f:
        while offset + 8 <= size:
            f.seek(offset)
            header = f.read(16)
            length, kind = struct.unpack(">I4s", header[:8])
            if length == 1 and len(header) == 16:
                length = struct.unpack(">Q", header[8:16])[0]
            if length < 8 or offset + length > size:
                break
            offset += length
            if kind in (b"ftyp", b"moov", b"mdat", b"mfra"):
                good = offset  # a moof counts once its mdat is complete
        if good and good < size:
            f.truncate(good)


def refuse(path: object, exc: BaseException) -> OutputError:
    """One line for a container that refused its streams (at the header)."""
    return OutputError(f"{path}: the output container refused its streams ({getattr(exc, 'strerror', None) or exc})")
