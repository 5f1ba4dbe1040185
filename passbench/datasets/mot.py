"""MOTChallenge sequences (MOT15/16/17/20 layouts and the MOT17-mini sample): metadata, gt, det, frames.

A sequence folder holds ``seqinfo.ini``, ``gt/gt.txt`` (train), ``det/det.txt`` and its frames as
``img1/%06d.jpg`` or, where ``img1/`` is absent, as one video named after the sequence
(``PETS09-S2L1.avi``); video frame i (0-based) is MOT frame i + 1. ``seqinfo.ini``'s frame rate
wins over the container's (the PETS AVI says 10 fps; 7 is right).

Sequences are addressed relative to the data root (``"MOT15/train/PETS09-S2L1"``), by bare name
(searched under :data:`BENCHMARK_DIRS` x ``train``/``test``) or by a folder path.

Half split (REFERENCE.md 3.2): we follow FairMOT ``src/track_half.py`` / ``src/data/mot17.half``:
with N frames present, train = frames 1..N//2 and validation = N//2+1..N (300 + 300 for MOT17-02).
CenterTrack/ByteTrack's ``convert_mot17_to_coco.py`` splits one frame later (301 + 299); we do not.
N counts the frames present, as FairMOT's ``len(dataloader)`` does.
"""

from __future__ import annotations

import configparser
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from passbench.datasets import ON_CORRUPT_FRAME
from passbench.datasets.motio import read_mot_table
from passbench.datasets.video import count_video_frames, iter_image_frames, iter_video_frames, read_image
from passbench.errors import UserError
from passbench.paths import resolve_data_root

BENCHMARK_DIRS = ("MOT15", "MOT16", "MOT17", "MOT20", "MOT17-mini")
SPLITS = ("train", "test")
VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg")
_INI_FIELDS = {"name": str, "imDir": str, "frameRate": float, "seqLength": int, "imWidth": int, "imHeight": int,
               "imExt": str}


class SequenceError(UserError, FileNotFoundError):
    """A sequence cannot be found or its files are incomplete."""


@dataclass(frozen=True)
class SeqInfo:
    """``seqinfo.ini`` ``[Sequence]`` fields (frame rate in frames/s, sizes in pixels)."""

    name: str
    im_dir: str
    frame_rate: float
    seq_length: int
    width: int
    height: int
    im_ext: str


def read_seqinfo(path: str | os.PathLike[str]) -> SeqInfo:
    """Parse ``seqinfo.ini`` (configparser); a missing file, section or field raises naming it."""
    path = Path(path)
    if not path.is_file():
        raise SequenceError(f"seqinfo.ini not found: {path}")
    ini = configparser.ConfigParser()
    try:
        ini.read(path, encoding="utf-8")
    except configparser.Error as e:
        raise SequenceError(f"{path}: cannot parse: {e}") from e
    if "Sequence" not in ini:
        raise SequenceError(f"{path}: no [Sequence] section")
    sec, vals = ini["Sequence"], {}
    for key, typ in _INI_FIELDS.items():
        if key not in sec:
            raise SequenceError(f"{path}: field {key!r} missing from [Sequence]")
        try:
            vals[key] = typ(sec[key].strip())
        except ValueError:
            raise SequenceError(f"{path}: field {key}={sec[key]!r} is not a valid {typ.__name__}") from None
    ext = vals["imExt"] if vals["imExt"].startswith(".") else "." + vals["imExt"]
    return SeqInfo(vals["name"], vals["imDir"], vals["frameRate"], vals["seqLength"], vals["imWidth"],
                   vals["imHeight"], ext)


def _benchmark_of(folder: Path) -> str:
    """``MOT15``/``MOT16``/``MOT17``/``MOT20`` from the layout (``MOT17-mini`` -> ``MOT17``) or the name."""
    for part in (folder.parent.parent.name, folder.name):
        m = re.match(r"MOT(15|16|17|20)", part)
        if m:
            return m.group(0)
    gt = folder / "gt" / "gt.txt"
    if gt.is_file():  # MOT15 gt has 10 columns, MOT16/17/20 have 9
        with open(gt, encoding="utf-8") as fh:
            first = next((ln for ln in fh if ln.strip()), "")
        if len(re.split(r"\s*,\s*|\s+", first.strip())) == 10:
            return "MOT15"
    return "MOT17"


class MOTSequence:
    """One MOTChallenge sequence; gt/det are parsed on first use, frames are streamed.

    Attributes:
        name: sequence name (``seqinfo.ini`` ``name``).
        path: the sequence folder.
        benchmark: ``MOT15``/``MOT16``/``MOT17``/``MOT20`` (drives the evaluation preprocessing).
        info: the parsed :class:`SeqInfo`.
        seq_length: frames per ``seqinfo.ini``.
        num_frames: frames present (``<= seq_length``; smaller for cut sequences such as MOT17-mini).
        frame_rate: frames/s from ``seqinfo.ini``.
        video: the video file when frames come from one, else None.
        on_corrupt_frame: ``"error"`` (default): a frame that is missing, cut short, undecodable or not
            ``seqinfo.ini``'s size raises ``FrameDecodeError`` naming the file. ``"skip"``: such an
            ``img1/`` frame is left out of :meth:`frames` and its number appended to ``skipped_frames``
            (a bad video frame still raises: a stream cannot be resumed past it).
        skipped_frames: MOT frames left out so far (``on_corrupt_frame="skip"`` only).
        dropped_rows: ``{"gt" | "det": [line, ...]}`` rows of non-positive size that MOTChallenge's
            evaluator does not score, dropped when the file was read (``passbench.datasets.motio``).
    """

    def __init__(self, path: str | os.PathLike[str], on_corrupt_frame: str = "error"):
        if on_corrupt_frame not in ON_CORRUPT_FRAME:
            raise ValueError(f"on_corrupt_frame must be one of {ON_CORRUPT_FRAME}, got {on_corrupt_frame!r}")
        self.on_corrupt_frame = on_corrupt_frame
        self.skipped_frames: list[int] = []
        self.dropped_rows: dict[str, list[int]] = {}
        self.path = Path(path)
        self.info = read_seqinfo(self.path / "seqinfo.ini")
        self.name = self.info.name
        self.benchmark = _benchmark_of(self.path)
        self.seq_length = self.info.seq_length
        self.frame_rate = self.info.frame_rate
        self.width, self.height = self.info.width, self.info.height
        self.img_dir = self.path / self.info.im_dir
        self.video: Path | None = None
        if self.img_dir.is_dir():
            pat = re.compile(r"^(\d+)" + re.escape(self.info.im_ext) + "$")
            present = [int(m.group(1)) for p in os.listdir(self.img_dir) if (m := pat.match(p))]
            present_n = len(present)
        else:
            self.video = self._find_video()
            present_n = count_video_frames(self.video)
        if present_n == 0:
            raise SequenceError(f"sequence {self.name}: no frames in {self.img_dir}")
        if present_n < self.seq_length:
            warnings.warn(f"sequence {self.name} is cut: {present_n} frames present, seqinfo.ini seqLength "
                          f"{self.seq_length}; loading the {present_n} present (gt/det restricted to them)",
                          stacklevel=3)
        elif present_n > self.seq_length:
            warnings.warn(f"sequence {self.name}: {present_n} frames present, seqinfo.ini seqLength "
                          f"{self.seq_length}; using the first {self.seq_length}", stacklevel=3)
        self.num_frames = min(present_n, self.seq_length)

    def _find_video(self) -> Path:
        for stem in dict.fromkeys((self.name, self.path.name)):
            for ext in VIDEO_EXTS:
                p = self.path / f"{stem}{ext}"
                if p.is_file():
                    return p
        raise SequenceError(f"sequence {self.name}: neither {self.img_dir} nor a video "
                            f"{self.path / self.name}{{{','.join(VIDEO_EXTS)}}} exists")

    def __repr__(self) -> str:
        return (f"MOTSequence({self.benchmark}/{self.name}, frames={self.num_frames}/{self.seq_length}, "
                f"fps={self.frame_rate:g}, {'video' if self.video else 'img1'})")

    @property
    def length(self) -> int:
        """Frames present (alias of :attr:`num_frames`)."""
        return self.num_frames

    def frames(self, start: int = 1, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(mot_frame, rgb)`` for frames ``start <= f < stop`` (1-based, stop exclusive).

        Args:
            start: first frame, ``1 <= start <= num_frames``.
            stop: one past the last frame, at most ``num_frames + 1``; None = to the end.

        Yields:
            ``(frame, rgb)``, ``rgb`` (height, width, 3) uint8.

        Raises:
            ValueError: the range lies outside the frames present.
            passbench.datasets.video.FrameDecodeError: a frame is missing, cut short, undecodable or not
                ``seqinfo.ini``'s imWidth x imHeight (names file + frame); with ``on_corrupt_frame="skip"``
                an ``img1/`` frame is left out instead (``skipped_frames``).
        """
        stop = self.num_frames + 1 if stop is None else int(stop)
        if not 1 <= start <= self.num_frames or not start <= stop <= self.num_frames + 1:
            raise ValueError(f"sequence {self.name}: frames [{start}, {stop}) outside the {self.num_frames} present")
        size, where = (self.width, self.height), str(self.path / "seqinfo.ini")
        if self.video is not None:
            return iter_video_frames(self.video, start, stop, expected=self.num_frames, size=size, where=where)
        skip = self.skipped_frames if self.on_corrupt_frame == "skip" else None
        return iter_image_frames(self.img_dir, self.info.im_ext, start, stop, size=size, where=where, skip_bad=skip)

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (1-based) as (height, width, 3) uint8 RGB (a bad frame always raises)."""
        if self.video is None:
            if not 1 <= i <= self.num_frames:
                raise ValueError(f"sequence {self.name}: frame {i} outside 1..{self.num_frames}")
            return read_image(self.img_dir / f"{i:06d}{self.info.im_ext}", i, (self.width, self.height),
                              str(self.path / "seqinfo.ini"))
        return next(self.frames(i, i + 1))[1]

    def _table(self, sub: str, kind: str) -> pd.DataFrame | None:
        p = self.path / sub / f"{sub}.txt"
        if not p.is_file():
            return None
        df, dropped = read_mot_table(p, kind)
        if dropped:
            self.dropped_rows[sub] = list(dropped)
            warnings.warn(f"{p}: dropped {len(dropped)} {kind} rows of non-positive size that MOTChallenge's "
                          f"evaluator does not score (lines {', '.join(map(str, dropped[:5]))}"
                          f"{', ...' if len(dropped) > 5 else ''})", stacklevel=3)
        late = df["frame"] > self.seq_length
        if late.any():
            raise SequenceError(f"{p}: frame {int(df.loc[late, 'frame'].iloc[0])} beyond seqLength {self.seq_length}")
        return restrict_frames(df, range(1, self.num_frames + 1))

    @cached_property
    def gt(self) -> pd.DataFrame | None:
        """Ground truth (normalised columns, see ``motio``) on the frames present; None without ``gt/gt.txt``."""
        return self._table("gt", "gt")

    @cached_property
    def det(self) -> pd.DataFrame | None:
        """Public detections on the frames present; None without ``det/det.txt``."""
        return self._table("det", "det")


def restrict_frames(df: pd.DataFrame, frames: Iterable[int]) -> pd.DataFrame:
    """Rows of a MOT table whose ``frame`` lies in ``frames`` (a range or any iterable of 1-based ints)."""
    if isinstance(frames, range) and frames.step == 1:
        keep = (df["frame"] >= frames.start) & (df["frame"] < frames.stop)
    else:
        keep = df["frame"].isin(list(frames))
    return df[keep].reset_index(drop=True)


def half_split(seq: MOTSequence | int) -> tuple[range, range]:
    """FairMOT half split: ``(train, val) = (range(1, N//2 + 1), range(N//2 + 1, N + 1))``.

    Args:
        seq: a sequence (N = its frames present) or N itself.
    """
    n = seq if isinstance(seq, int) else seq.num_frames
    if n < 2:
        raise ValueError(f"half_split needs at least 2 frames, got {n}")
    return range(1, n // 2 + 1), range(n // 2 + 1, n + 1)


def _is_seq_dir(p: Path) -> bool:
    return p.is_dir() and (p / "seqinfo.ini").is_file()


def find_sequence(name_or_path: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of a sequence given as a folder path, ``"MOT15/train/<seq>"`` or a bare name."""
    p = Path(name_or_path)
    if _is_seq_dir(p):
        return p
    root = resolve_data_root(data_root)
    if len(p.parts) > 1:
        cand = root / p
        if _is_seq_dir(cand):
            return cand
        raise SequenceError(f"sequence {name_or_path!r}: {cand} is not a sequence folder (no seqinfo.ini)")
    tried = [root / b / s / str(p) for b in BENCHMARK_DIRS for s in SPLITS]
    for cand in tried:
        if _is_seq_dir(cand):
            return cand
    raise SequenceError(f"sequence {name_or_path!r} not found under {root} ({'/'.join(BENCHMARK_DIRS)} x "
                        f"{'/'.join(SPLITS)})")


def load_sequence(name_or_path: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None,
                  on_corrupt_frame: str = "error") -> MOTSequence:
    """Open a sequence (see :func:`find_sequence` for the accepted names; ``on_corrupt_frame``: see
    :class:`MOTSequence`).

    Raises:
        passbench.paths.DataRootError: no data root.
        SequenceError: the sequence or its ``seqinfo.ini`` / frames are missing.
    """
    return MOTSequence(find_sequence(name_or_path, data_root), on_corrupt_frame)


def list_sequences(benchmark: str, split: str = "train", data_root: str | os.PathLike[str] | None = None) -> list[str]:
    """Sorted names ``"<benchmark>/<split>/<seq>"`` of the sequences in a benchmark split folder.

    Raises:
        SequenceError: the folder does not exist.
    """
    root = resolve_data_root(data_root)
    d = root / benchmark / split
    if not d.is_dir():
        raise SequenceError(f"no {benchmark} {split} folder: {d}")
    return sorted(f"{benchmark}/{split}/{p.name}" for p in d.iterdir() if _is_seq_dir(p))
