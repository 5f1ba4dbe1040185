"""Streamed frame decoding: a video file with PyAV, or an ``img1/`` folder of numbered images.

MOT frame numbers are 1-based; video frame ``i`` (0-based, decode order of the first video stream)
is MOT frame ``i + 1`` (``/work/shared/data/README.md``). Nothing here holds more than one decoded
frame: both readers are generators.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from passbench.errors import UserError


class FrameDecodeError(UserError, RuntimeError):
    """A frame is missing or could not be decoded; the message names the file and the MOT frame."""


def _open(path: Path):
    import av  # noqa: PLC0415 - PyAV only when a video is really read

    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise FrameDecodeError(f"{path}: cannot open video: {e}") from e


@lru_cache(maxsize=64)
def _count(path: str, mtime_ns: int, size: int) -> int:
    """Frames in the first video stream: the container's count when it gives one, else a decode pass."""
    with _open(Path(path)) as c:
        s = c.streams.video[0]
        if s.frames and s.frames > 0:
            return int(s.frames)
        s.thread_type = "AUTO"
        return sum(1 for _ in c.decode(s))


def count_video_frames(path: str | os.PathLike[str]) -> int:
    """Number of frames in a video (container header count if present, else one cached decode pass).

    The header count is what AVI/MP4 store (``nb_frames``); :func:`iter_video_frames` raises if
    decoding ends before that many frames, so an unreliable header cannot go unnoticed.
    """
    p = Path(path)
    st = p.stat()
    return _count(str(p.resolve()), st.st_mtime_ns, st.st_size)


def video_fps(path: str | os.PathLike[str]) -> float | None:
    """The container's average frame rate (MOT code prefers ``seqinfo.ini``; PETS' AVI says 10, not 7)."""
    with _open(Path(path)) as c:
        r = c.streams.video[0].average_rate
        return float(r) if r else None


def iter_video_frames(path: str | os.PathLike[str], start: int = 1, stop: int | None = None,
                      expected: int | None = None, size: tuple[int, int] | None = None,
                      where: str = "seqinfo.ini") -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(mot_frame, rgb)`` for MOT frames ``start <= f < stop`` of a video, streamed.

    Frames before ``start`` are decoded and dropped (exact for any codec; a keyframe seek is not used
    because AVI/MS-MPEG4 timestamps do not map reliably to frame indices).

    Args:
        path: video file.
        start: first MOT frame (1-based).
        stop: one past the last MOT frame; None = to the end.
        expected: frames the video should hold (e.g. its counted length); decoding ending earlier
            than ``min(stop - 1, expected)`` raises.
        size: ``(width, height)`` every frame must have (``seqinfo.ini``'s imWidth / imHeight), or None.
        where: what ``size`` comes from, for the message.

    Yields:
        ``(mot_frame, rgb)`` with ``rgb`` (H, W, 3) uint8.

    Raises:
        FrameDecodeError: the file cannot be opened, a packet fails to decode, or the stream ends
            before an expected frame; the message names the file and the MOT frame.
    """
    import av  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise FrameDecodeError(f"{path}: video file not found (MOT frame {start})")
    last_wanted = None if stop is None else stop - 1
    if expected is not None:
        last_wanted = expected if last_wanted is None else min(last_wanted, expected)
    mot_frame = 0
    with _open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        try:
            for frame in c.decode(s):
                mot_frame += 1
                if mot_frame < start:
                    continue
                if stop is not None and mot_frame >= stop:
                    return
                rgb = frame.to_ndarray(format="rgb24")
                check_size(rgb, size, f"{path}: MOT frame {mot_frame}", where)
                yield mot_frame, rgb
        except av.FFmpegError as e:
            raise FrameDecodeError(f"{path}: MOT frame {mot_frame + 1} failed to decode: {e}") from e
    if last_wanted is not None and mot_frame < last_wanted:
        raise FrameDecodeError(f"{path}: video ended after {mot_frame} frames; MOT frame {mot_frame + 1} "
                               f"(of {last_wanted} expected) is missing or undecodable")


def check_size(rgb: np.ndarray, size: tuple[int, int] | None, what: str, where: str) -> None:
    """Raise :class:`FrameDecodeError` when ``rgb`` (H, W, 3) is not ``size`` = (width, height)."""
    if size is not None and (rgb.shape[1], rgb.shape[0]) != (int(size[0]), int(size[1])):
        raise FrameDecodeError(f"{what} is {rgb.shape[1]}x{rgb.shape[0]} px but {where} says imWidth={size[0]}, "
                               f"imHeight={size[1]}")


# How a complete file ends: a JPEG with its EOI marker (it cannot occur inside the entropy-coded data,
# where 0xFF is stuffed as FF 00), a PNG with its IEND chunk. OpenCV's ``imread`` decodes a cut JPEG
# into a partial image (the missing rows grey) with only a libjpeg warning on stderr; ``imdecode`` of
# this build refuses some cut files, but no OpenCV API promises either, so the end is checked first.
_COMPLETE = ((b"\xff\xd8", b"\xff\xd9", "JPEG end-of-image marker FF D9"),
             (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82", "PNG IEND chunk"))


def read_image(path: Path, mot_frame: int, size: tuple[int, int] | None = None,
               where: str = "seqinfo.ini") -> np.ndarray:
    """One ``img1/`` frame as (H, W, 3) uint8 RGB, decoded completely.

    Args:
        path: the image file.  mot_frame: its MOT frame number (for messages).
        size: ``(width, height)`` the frame must have (``seqinfo.ini``), or None.  where: what ``size`` comes from.

    Raises:
        FrameDecodeError: the file is missing, empty, cut short (a JPEG without its end-of-image marker, a
            PNG without IEND: OpenCV would return a partial image), not decodable, or not ``size``; the
            message names the file and the frame.
    """
    import cv2  # noqa: PLC0415

    if not path.is_file():
        raise FrameDecodeError(f"{path}: MOT frame {mot_frame} is missing")
    data = path.read_bytes()
    for magic, end, what in _COMPLETE:
        if data.startswith(magic) and not data.rstrip(b"\x00\r\n\t ").endswith(end):
            raise FrameDecodeError(f"{path}: MOT frame {mot_frame} is truncated or corrupt ({len(data)} bytes, no "
                                   f"{what} at the end)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        raise FrameDecodeError(f"{path}: MOT frame {mot_frame} could not be decoded ({len(data)} bytes)")
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])  # BGR -> RGB
    check_size(rgb, size, f"{path}: MOT frame {mot_frame}", where)
    return rgb


def iter_image_frames(folder: Path, ext: str, start: int, stop: int, size: tuple[int, int] | None = None,
                      where: str = "seqinfo.ini", skip_bad: list[int] | None = None
                      ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(mot_frame, rgb)`` for ``img1/<%06d><ext>`` files, frames ``start <= f < stop``.

    Args:
        size, where: as :func:`read_image`.
        skip_bad: None: a bad frame raises (the default). A list: a bad frame is left out, its number
            appended to the list and a warning given (``--on-corrupt-frame skip``).
    """
    for f in range(start, stop):
        try:
            rgb = read_image(folder / f"{f:06d}{ext}", f, size, where)
        except FrameDecodeError as e:
            if skip_bad is None:
                raise
            if f not in skip_bad:  # a second pass over the frames (timing, then tracking) lists it once
                warnings.warn(f"skipping a bad frame: {e}", stacklevel=2)
                skip_bad.append(f)
            continue
        yield f, rgb
