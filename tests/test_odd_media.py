"""Odd media, each handled or refused up front with one line (all made here, small).

Once: an MP4 whose cover picture came first had its 1-frame cover anonymized and its
video dropped (exit 0, "fps 90000"); a picture size change mid-file crashed ("index can't
contain negative values"); joined MPEG-TS recordings with audio failed with "Operation not
permitted" blamed on the output; TIFFs from OpenCV, FFmpeg or ImageMagick came out black
as "damaged"; truncated or corrupted videos were "ok" with no warning; ``-o x.jpg`` for a
video kept its last frame; EXIF orientations 2/5/7 came out mirrored; HEIC ignored its
rotation (and FFmpeg reads a tiled HEIC's first tile only).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import camstream, probe, read_frames, read_image
from media import cover_art_first, heic, make_media, transport_stream

from streamer.sources import ImageSource

FACES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "Megamind.avi"


def _frames(n: int, w: int = 64, h: int = 48, seed: int = 0) -> list[np.ndarray]:
    out = []
    for i in range(n):
        f = np.full((h, w, 3), (i * 7 + seed) % 200, np.uint8)
        f[h // 4 : h // 2, w // 4 : w // 2] = 255
        out.append(f)
    return out


def _report(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_video_is_anonymized_not_the_cover_picture_that_comes_first(tmp_path: Path) -> None:
    src = cover_art_first(tmp_path / "cover.mp4", _frames(75))
    with av.open(str(src)) as c:  # the case itself: FFmpeg lists the cover first
        assert c.streams[0].disposition & av.stream.Disposition.attached_pic
    r = camstream("run", src, "--method", "solid", "-o", tmp_path / "out.mp4", "--report", tmp_path / "r.json", "-q")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "r.json")
    assert report["frames_out"] == 75 and report["source"]["fps"] == 25.0, report
    assert probe(tmp_path / "out.mp4")["frames"] == 75


def test_a_picture_size_change_mid_file_is_scaled_to_the_first_size(tmp_path: Path) -> None:
    src = transport_stream(tmp_path / "grows.ts", [_frames(20, 64, 48), _frames(20, 128, 96, 30)], audio=False)
    r = camstream("run", src, "--method", "solid", "-o", tmp_path / "out.mp4", "-q")
    assert r.returncode == 0, r.stderr
    assert "picture size changes mid-file" in r.stderr
    p = probe(tmp_path / "out.mp4")
    assert p["frames"] == 40 and (p["width"], p["height"]) == (64, 48)


def test_joined_transport_streams_with_audio_keep_every_frame(tmp_path: Path) -> None:
    src = transport_stream(tmp_path / "joined.ts", [_frames(19), _frames(18, seed=50)], audio=True)
    r = camstream("run", src, "--method", "solid", "-o", tmp_path / "out.mp4", "--report", tmp_path / "r.json", "-q")
    assert r.returncode == 0, r.stderr
    p = probe(tmp_path / "out.mp4")
    assert p["frames"] == 37 and all(b > a for a, b in zip(p["pts"], p["pts"][1:], strict=False))
    assert p["audio"] is not None and p["audio"]["duration"] > 1.2  # both parts' audio, one after the other
    assert _report(tmp_path / "r.json")["status"] == "ok"


def _av_tiff(path: Path, image: np.ndarray) -> Path:
    """A TIFF as FFmpeg's encoder writes it."""
    with av.open(str(path), "w", format="image2") as out:
        s = out.add_stream("tiff", rate=1)
        s.width, s.height, s.pix_fmt = image.shape[1], image.shape[0], "rgb24"
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for p in [*s.encode(frame), *s.encode(None)]:
            out.mux(p)
    return path


@pytest.mark.parametrize("writer", ["opencv", "ffmpeg", "pillow", "tifffile", "imagemagick"])
def test_tiffs_of_every_common_writer_decode(writer: str, data: Path, tmp_path: Path) -> None:
    image = read_image(data / "grace_hopper_512x512.jpg")
    path = tmp_path / "photo.tif"
    if writer == "opencv":
        cv2.imwrite(str(path), image[:, :, ::-1])
    elif writer == "ffmpeg":
        _av_tiff(path, image)
    elif writer == "pillow":
        from PIL import Image

        Image.fromarray(image).save(path, compression="tiff_lzw")
    elif writer == "tifffile":
        tifffile = pytest.importorskip("tifffile")
        tifffile.imwrite(path, image, compression="zlib")
    else:
        convert = shutil.which("convert-im6.q16") or shutil.which("magick")
        if convert is None:
            pytest.skip("ImageMagick is not installed (.ci/apt-packages.txt brings it)")
        subprocess.run([convert, str(data / "grace_hopper_512x512.jpg"), str(path)], check=True, timeout=60)
    source = ImageSource(path)
    (frame,) = list(source)
    assert source.stats.decode_errors == 0, source.stats.errors
    assert np.abs(frame.image.astype(int) - image).mean() < 3  # the picture, not a black "damaged" cover
    r = camstream("run", path, "--method", "solid", "-o", tmp_path / "out.tif", "-q")
    assert r.returncode == 0 and "damaged" not in r.stderr, r.stderr
    assert read_image(tmp_path / "out.tif").max() > 0


@pytest.mark.parametrize("writer", ["opencv", "pillow"])
def test_a_truncated_tiff_is_never_passed_on_half_decoded(writer: str, data: Path, tmp_path: Path) -> None:
    from PIL import Image

    from streamer.errors import InputError

    image = read_image(data / "messi5.jpg")
    full = tmp_path / "full.tif"
    cv2.imwrite(str(full), image[:, :, ::-1]) if writer == "opencv" else Image.fromarray(image).save(full)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    try:
        source = ImageSource(cut)
    except InputError:
        return  # its directory was in the lost half: not an image at all (left out, exit 3 alone)
    (frame,) = list(source)
    assert source.stats.decode_errors == 1 and frame.image.max() == 0  # covered whole


def _faststart(path: Path, frames: list[np.ndarray]) -> Path:
    """An MP4 with its index in front (what cameras and web encoders write)."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        v = out.add_stream("libx264", rate=25)
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt, v.options = "yuv420p", {"preset": "ultrafast"}
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 25)
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
    return path


@pytest.mark.parametrize("case", ["truncated-mp4", "truncated-mkv", "truncated-ts", "corrupted-packets"])
def test_partial_decodes_are_partial_with_a_warning_and_counted(case: str, tmp_path: Path) -> None:
    frames = read_frames(FACES, limit=50)
    if case == "truncated-mp4":
        full = _faststart(tmp_path / "full.mp4", frames)
    elif case == "truncated-ts":  # no index to compare with, and here FFmpeg drops the cut frame silently
        full = make_media(tmp_path / "full.ts", frames, video="mpeg2video")
    else:
        full = make_media(tmp_path / "full.mkv", frames)
    data = bytearray(full.read_bytes())
    if case == "corrupted-packets":
        for k in range(len(data) // 3, len(data) // 3 + 4000, 50):
            data[k] ^= 0x5A
    else:
        data = data[: int(len(data) * (0.9 if case == "truncated-ts" else 0.6)) | 1]  # odd: never whole transport packets
    src = tmp_path / f"damaged{full.suffix}"
    src.write_bytes(bytes(data))
    r = camstream("run", src, "--method", "solid", "-o", tmp_path / "out.mp4", "--report", tmp_path / "r.json", "-q")
    assert r.returncode == 0, r.stderr
    report = _report(tmp_path / "r.json")
    assert report["status"] == "partial" and report["decode_errors"] >= 1 and report["source_errors"], report
    assert "input was damaged" in r.stderr, r.stderr
    assert probe(tmp_path / "out.mp4")["frames"] == report["frames_out"] > 0


def test_a_whole_file_is_ok(tmp_path: Path) -> None:
    src = _faststart(tmp_path / "whole.mp4", _frames(30))
    r = camstream("run", src, "--method", "solid", "-o", tmp_path / "out.mp4", "--report", tmp_path / "r.json", "-q")
    assert r.returncode == 0 and "damaged" not in r.stderr, r.stderr
    assert _report(tmp_path / "r.json")["status"] == "ok"


@pytest.mark.parametrize("output", ["x.jpg", "x.png", "x.heic"])
def test_an_image_output_for_a_video_is_refused(output: str, tmp_path: Path) -> None:
    src = make_media(tmp_path / "clip.mp4", _frames(10))
    r = camstream("run", src, "--method", "solid", "-o", tmp_path / output)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "an image cannot hold a video" in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == [src]


def test_an_animated_webp_is_refused_with_what_it_is(tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "anim.webp"
    first, *rest = [Image.fromarray(f) for f in _frames(5)]
    first.save(src, save_all=True, append_images=rest, duration=40)
    r = camstream("run", src, "--method", "solid", "-q")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 3 and len(lines) == 1 and "an animated WebP" in lines[0], r.stderr


def test_an_image_output_for_a_folder_of_images_is_refused(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(data / "messi5.jpg", folder / name)
    r = camstream("run", folder, "--method", "solid", "-o", tmp_path / "x.jpg")
    assert r.returncode == 2 and "an image cannot hold a folder of images" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # nothing written


_UP = np.zeros((40, 60, 3), np.uint8)
_UP[:20, :30], _UP[:20, 30:], _UP[20:, :30] = (255, 0, 0), (0, 255, 0), (0, 0, 255)  # red green / blue black


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright_and_not_mirrored(orientation: int, suffix: str, tmp_path: Path) -> None:
    from PIL import Image

    # stored as a camera would: the upright picture turned so that orientation N shows it upright
    undo = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    stored = Image.fromarray(_UP)
    if orientation in undo:
        stored = stored.transpose(undo[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}{suffix}"
    stored.save(path, exif=exif.tobytes(), **({"quality": 95} if suffix == ".jpg" else {}))
    source = ImageSource(path)
    (frame,) = list(source)
    assert frame.image.shape == _UP.shape and np.abs(frame.image.astype(int) - _UP).mean() < 8


@pytest.mark.parametrize("mirror", [None, 0, 1])
@pytest.mark.parametrize("turns", range(4))
def test_heic_rotation_and_mirror_are_applied(turns: int, mirror: int | None, tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif")
    shown = _UP if mirror is None else (_UP[::-1] if mirror == 0 else _UP[:, ::-1])
    stored = np.ascontiguousarray(np.rot90(shown, -turns))  # what the viewer turns back
    path = heic(tmp_path / "photo.heic", stored, rotation=90 * turns, mirror=mirror)
    source = ImageSource(path)
    (frame,) = list(source)
    assert frame.image.shape == _UP.shape and np.abs(frame.image.astype(int) - _UP).mean() < 12


def test_a_heic_photo_runs_end_to_end_into_a_jpeg(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("pillow_heif")
    face = read_image(data / "grace_hopper_512x512.jpg")
    src = heic(tmp_path / "IMG_0001.heic", np.ascontiguousarray(np.rot90(face, 1)), rotation=270)  # stored sideways
    r = camstream("run", src, "--method", "solid", "-q")
    assert r.returncode == 0, r.stderr
    out = read_image(tmp_path / "IMG_0001.anonymized.jpg")
    assert out.shape == face.shape
    assert np.abs(out.astype(int) - face).mean() < 40  # upright: mostly the same picture, the face covered
