"""MOTChallenge text files: one strict parser for gt / det / results, and an atomic results writer.

Formats (REFERENCE.md 3.2, ``/work/shared/data/README.md``):

========  =======  ===============================================================
kind      columns  meaning
========  =======  ===============================================================
gt        10       MOT15: frame, id, x, y, w, h, conf (= consider flag), wx, wy, wz
gt        9        MOT16/17/20: frame, id, x, y, w, h, flag (0 = ignore), class, visibility
det       7 or 10  frame, id (-1), x, y, w, h, score[, wx, wy, wz]  (MOT17-FRCNN ships 7)
results   6 to 10  frame, id, x, y, w, h[, conf[, class or wx, ...]]
========  =======  ===============================================================

Row checks (each an error naming ``file:line``): column count, numbers, every field finite, integer
frame / id / class, frame >= 1, and for gt / det a box of positive width and height. A gt row with a
non-positive width or height is dropped (counted, :func:`read_mot_table`) only where MOTChallenge's
own evaluator never scores it, i.e. where TrackEval drops the row anyway (consider flag 0, or for
9-column MOT16/17/20 gt a class other than 1 pedestrian; ``mot_challenge_2d_box.py``
``get_preprocessed_seq_data``). Every other such gt row is an error: TrackEval keeps it as ground
truth and gives it IoU 0 with every box (``_calculate_box_ious`` zeroes empty areas; a negative
width *and* height has a positive area but no overlap either), so each one silently adds a false
negative. Results rows are not size-checked: TrackEval scores an empty tracker box as a false
positive, and so does ``passbench.metrics.mot``.

Every kind is returned with the same normalised columns ``frame, id, x, y, w, h, conf, cls, vis``
(:data:`COLUMNS`): boxes in pixels (top-left x, y, width, height), ``frame`` 1-based. MOT15 gt gets
``cls = 1`` (all pedestrians) and ``vis = 1`` and keeps its conf column as the consider flag, as
TrackEval does (``mot_challenge_2d_box.py::_load_raw_file`` reads column 6 as ``zero_marked``).
Detections get ``cls = -1, vis = -1``; results keep TrackEval's class column (index 7) or ``-1``.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from passbench.errors import UserError

COLUMNS = ("frame", "id", "x", "y", "w", "h", "conf", "cls", "vis")
DTYPES = {"frame": "int64", "id": "int64", "x": "float64", "y": "float64", "w": "float64", "h": "float64",
          "conf": "float64", "cls": "int64", "vis": "float64"}
_ALLOWED = {"gt": (9, 10), "det": (7, 10), "results": (6, 7, 8, 9, 10)}
_SPLIT = re.compile(r"\s*,\s*|\s+")


class MOTFormatError(UserError, ValueError):
    """A MOT txt file does not follow the format; the message names the file and 1-based line."""


def empty_frame() -> pd.DataFrame:
    """An empty table with the normalised columns and dtypes."""
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in DTYPES.items()})


def _as_int(v: float, path: Path, line: int, field: str) -> int:
    if not v.is_integer():
        raise MOTFormatError(f"{path}:{line}: {field} must be an integer, got {v!r}")
    return int(v)


class MOTTable(NamedTuple):
    """A parsed MOT txt file: the table and the 1-based lines of rows dropped (module docstring)."""

    df: pd.DataFrame
    dropped: tuple[int, ...]


def read_mot_txt(path: str | os.PathLike[str], kind: str = "gt") -> pd.DataFrame:
    """Parse a MOTChallenge gt / det / results txt file (:func:`read_mot_table` without the dropped lines;
    a warning says how many were dropped)."""
    table = read_mot_table(path, kind)
    if table.dropped:
        warnings.warn(f"{path}: dropped {len(table.dropped)} gt rows of non-positive size that MOTChallenge's "
                      f"evaluator does not score (lines {', '.join(map(str, table.dropped[:5]))}"
                      f"{', ...' if len(table.dropped) > 5 else ''})", stacklevel=2)
    return table.df


def read_mot_table(path: str | os.PathLike[str], kind: str = "gt") -> MOTTable:
    """Parse a MOTChallenge gt / det / results txt file.

    Args:
        path: the txt file.
        kind: ``"gt"`` (9 or 10 columns), ``"det"`` (7 or 10) or ``"results"`` (6 to 10).

    Returns:
        ``MOTTable(df, dropped)``: ``df`` with columns :data:`COLUMNS` and dtypes :data:`DTYPES`, in file
        order; ``dropped`` the lines of gt rows of non-positive size that the evaluator never scores.

    Raises:
        FileNotFoundError: the file does not exist.
        MOTFormatError: a row has a wrong or inconsistent column count, a non-numeric or non-finite
            field, a non-integer frame / id / class, a frame < 1, or (gt / det) a box of non-positive
            width or height that would be scored (module docstring); the message is ``file:line: why``.
            Nothing is returned in that case (no partial table).
    """
    if kind not in _ALLOWED:
        raise ValueError(f"kind must be one of {sorted(_ALLOWED)}, got {kind!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOT {kind} file not found: {path}")
    allowed = _ALLOWED[kind]
    rows: list[list[float]] = []
    dropped: list[int] = []
    ncols = None
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = raw.strip().rstrip(",")
            if not text:
                continue  # blank lines (a trailing newline, Windows line ends) carry no data
            fields = _SPLIT.split(text)
            if len(fields) not in allowed:
                raise MOTFormatError(f"{path}:{lineno}: {kind} rows need {' or '.join(map(str, allowed))} columns, "
                                     f"got {len(fields)}: {text!r}")
            if ncols is None:
                ncols = len(fields)
            elif len(fields) != ncols:
                raise MOTFormatError(f"{path}:{lineno}: {len(fields)} columns where earlier rows have {ncols}")
            try:
                vals = [float(f) for f in fields]
            except ValueError:
                raise MOTFormatError(f"{path}:{lineno}: non-numeric field in {text!r}") from None
            bad = [i for i, v in enumerate(vals) if not math.isfinite(v)]
            if bad:
                raise MOTFormatError(f"{path}:{lineno}: column {bad[0] + 1} is not finite in {text!r}")
            if _as_int(vals[0], path, lineno, "frame") < 1:
                raise MOTFormatError(f"{path}:{lineno}: frame must be >= 1, got {fields[0]}")
            _as_int(vals[1], path, lineno, "id")
            if (kind == "gt" and ncols == 9) or (kind == "results" and ncols > 7):
                if not math.isfinite(vals[7]):
                    raise MOTFormatError(f"{path}:{lineno}: class column is not finite in {text!r}")
                _as_int(vals[7], path, lineno, "class")
            if kind != "results" and not (vals[4] > 0 and vals[5] > 0):
                if kind == "gt" and not _scored(vals, ncols):
                    dropped.append(lineno)
                    continue
                raise MOTFormatError(f"{path}:{lineno}: box width {fields[4]} / height {fields[5]} must both be > 0"
                                     + (" (the evaluator would count this considered gt box as a false negative "
                                        "that no box can match)" if kind == "gt" else "") + f": {text!r}")
            rows.append(vals)
    if not rows:
        return MOTTable(empty_frame(), tuple(dropped))
    a = np.asarray(rows, dtype=np.float64)  # (N, ncols)
    n = len(a)
    conf = a[:, 6] if a.shape[1] > 6 else np.ones(n)
    if kind == "gt" and ncols == 9:
        cls, vis = a[:, 7], a[:, 8]
    elif kind == "gt":  # MOT15: no classes, everyone a pedestrian, fully visible
        cls, vis = np.ones(n), np.ones(n)
    elif kind == "det":
        cls, vis = -np.ones(n), -np.ones(n)
    else:  # results: TrackEval reads index 7 as the class when present (-1 = unset)
        cls = a[:, 7] if a.shape[1] > 7 else -np.ones(n)
        vis = -np.ones(n)
    df = pd.DataFrame({"frame": a[:, 0], "id": a[:, 1], "x": a[:, 2], "y": a[:, 3], "w": a[:, 4], "h": a[:, 5],
                       "conf": conf, "cls": cls, "vis": vis})
    return MOTTable(df.astype(DTYPES), tuple(dropped))


def _scored(vals: list[float], ncols: int) -> bool:
    """Whether TrackEval scores this gt row: consider flag int(column 7) != 0 and, for 9-column
    MOT16/17/20 gt, class 1 (``get_preprocessed_seq_data``; MOT15's 10 columns have no class)."""
    return int(vals[6]) != 0 and (ncols != 9 or int(vals[7]) == 1)


def _fmt(v: float) -> str:
    """Shortest text that reads back to the same float (``repr``), integers without a dot."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def write_mot_results(path: str | os.PathLike[str], df: pd.DataFrame) -> Path:
    """Write tracker results as ``frame,id,x,y,w,h,conf,-1,-1,-1`` lines, atomically.

    This is the MOTChallenge submission format that TrackEval accepts: its class column (index 7)
    is -1, since TrackEval raises on a class > 1 (``get_preprocessed_seq_data``). Rows are sorted by
    frame then id. The file is written to a temporary file in the same folder and renamed, so a
    reader never sees half a file.

    Args:
        path: destination txt file (its folder is created).
        df: columns ``frame, id, x, y, w, h`` and optionally ``conf`` (default 1); boxes in pixels.

    Returns:
        The path written.

    Raises:
        ValueError: a column is missing, a value is not finite, or an id repeats within a frame.
    """
    path = Path(path)
    missing = [c for c in ("frame", "id", "x", "y", "w", "h") if c not in df.columns]
    if missing:
        raise ValueError(f"write_mot_results({path}): missing columns {missing}")
    out = df[["frame", "id", "x", "y", "w", "h"]].copy()
    out["conf"] = df["conf"] if "conf" in df.columns else 1.0
    vals = out.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(vals)):
        raise ValueError(f"write_mot_results({path}): non-finite values in the results")
    if not (np.all(np.mod(vals[:, :2], 1) == 0) and np.all(vals[:, 0] >= 1)):
        raise ValueError(f"write_mot_results({path}): frame must be an integer >= 1 and id an integer")
    dup = out.duplicated(["frame", "id"])
    if dup.any():
        f, i = vals[int(np.argmax(dup.to_numpy())), :2]
        raise ValueError(f"write_mot_results({path}): id {int(i)} appears twice in frame {int(f)} "
                         "(TrackEval requires unique ids per frame)")
    order = np.lexsort((vals[:, 1], vals[:, 0]))
    lines = [",".join(_fmt(v) for v in row) + ",-1,-1,-1\n" for row in vals[order]]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
