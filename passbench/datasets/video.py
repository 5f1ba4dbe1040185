"""Streamed frame decoding: a video file with PyAV, or an ``img1/`` folder of numbered images.

MOT frame numbers are 1-based; video frame ``i`` (0-based, decode order of the first video stream)
is MOT frame ``i + 1`` (``/work/shared/data/README.md``). Nothing here holds more than one decoded
frame: both readers are generators.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np


class FrameDecodeError(RuntimeError):
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
                      expected: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(mot_frame, rgb)`` for MOT frames ``start <= f < stop`` of a video, streamed.

    Frames before ``start`` are decoded and dropped (exact for any codec; a keyframe seek is not used
    because AVI/MS-MPEG4 timestamps do not map reliably to frame indices).

    Args:
        path: video file.
        start: first MOT frame (1-based).
        stop: one past the last MOT frame; None = to the end.
        expected: frames the video should hold (e.g. its counted length); decoding ending earlier
            than ``min(stop - 1, expected)`` raises.

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
                yield mot_frame, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as e:
            raise FrameDecodeError(f"{path}: MOT frame {mot_frame + 1} failed to decode: {e}") from e
    if last_wanted is not None and mot_frame < last_wanted:
        raise FrameDecodeError(f"{path}: video ended after {mot_frame} frames; MOT frame {mot_frame + 1} "
                               f"(of {last_wanted} expected) is missing or undecodable")


def read_image(path: Path, mot_frame: int) -> np.ndarray:
    """One ``img1/`` frame as (H, W, 3) uint8 RGB; raises :class:`FrameDecodeError` naming file and frame."""
    import cv2  # noqa: PLC0415

    if not path.is_file():
        raise FrameDecodeError(f"{path}: MOT frame {mot_frame} is missing")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FrameDecodeError(f"{path}: MOT frame {mot_frame} could not be decoded")
    return np.ascontiguousarray(bgr[:, :, ::-1])  # BGR -> RGB


def iter_image_frames(folder: Path, ext: str, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(mot_frame, rgb)`` for ``img1/<%06d><ext>`` files, frames ``start <= f < stop``."""
    for f in range(start, stop):
        yield f, read_image(folder / f"{f:06d}{ext}", f)
