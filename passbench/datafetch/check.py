"""Is a data root complete? ``passbench data check mot|h36m DIR`` and the check after every fetch.

MOT (per benchmark folder ``<root>/<NAME>``, :mod:`passbench.datafetch.catalog`): every known train
and test sequence folder exists; its ``seqinfo.ini`` parses (``passbench.datasets.mot.read_seqinfo``)
and names the folder; ``<imDir>/`` holds exactly the frames ``000001<imExt>`` .. ``seqLength`` and no
gap; the first and last frame's pixel size is ``imWidth`` x ``imHeight`` (read from the image
header); a train sequence has ``gt/gt.txt``; every sequence has ``det/det.txt``; where the project has
verified metadata (MOT17 train) frames and size equal it too.

Human3.6M (``<root>/Human36M``, the 3DMPPE layout, ``passbench.datasets.h36m``; it cannot be
downloaded: licence): the three annotation files of each subject 1, 5, 6, 7, 8, 9, 11, and every
image folder and image a subject's ``_data.json`` lists.

Each check returns the problems as lines that name the path (empty: complete).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from passbench.datafetch import catalog as _catalog
from passbench.datafetch.catalog import Benchmark

H36M_SUBJECTS = (1, 5, 6, 7, 8, 9, 11)
H36M_FILES = ("data", "camera", "joint_3d")
_SHOW = 5  # missing items listed per folder before "(+N more)"


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) px from the image header (PIL reads no pixels)."""
    from PIL import Image  # noqa: PLC0415 - matplotlib's dependency, always installed

    with Image.open(path) as im:
        return im.size


def _listed(names: list[str]) -> str:
    more = f" (+{len(names) - _SHOW} more)" if len(names) > _SHOW else ""
    return ", ".join(names[:_SHOW]) + more


def check_sequence(folder: Path, split: str, known: object = None) -> list[str]:
    """Problems of one MOT sequence folder (see the module docstring)."""
    from passbench.datasets.mot import SequenceError, read_seqinfo  # noqa: PLC0415

    if not folder.is_dir():
        return [f"{folder}: missing"]
    try:
        info = read_seqinfo(folder / "seqinfo.ini")
    except SequenceError as e:
        return [str(e)]
    out = []
    if info.name != folder.name:
        out.append(f"{folder / 'seqinfo.ini'}: name={info.name} but the folder is {folder.name}")
    img = folder / info.im_dir
    if not img.is_dir():
        return out + [f"{img}: missing (seqinfo.ini imDir={info.im_dir})"]
    pat = re.compile(r"^(\d{6})" + re.escape(info.im_ext) + "$")
    have = {int(m.group(1)) for p in os.listdir(img) if (m := pat.match(p))}
    want = set(range(1, info.seq_length + 1))
    if have != want:
        gone = [f"{n:06d}{info.im_ext}" for n in sorted(want - have)]
        extra = [f"{n:06d}{info.im_ext}" for n in sorted(have - want)]
        if gone:
            out.append(f"{img}: {len(gone)} of {info.seq_length} frames missing (seqinfo.ini seqLength): {_listed(gone)}")
        if extra:
            out.append(f"{img}: {len(extra)} frames beyond seqLength {info.seq_length}: {_listed(extra)}")
    for n in sorted({1, info.seq_length} & have):
        p = img / f"{n:06d}{info.im_ext}"
        try:
            wh = image_size(p)
        except OSError as e:
            out.append(f"{p}: unreadable image ({e})")
            continue
        if wh != (info.width, info.height):
            out.append(f"{p}: {wh[0]}x{wh[1]} px, seqinfo.ini says imWidth x imHeight = {info.width}x{info.height}")
    if known is not None and (info.seq_length, info.width, info.height) != (known.frames, known.width, known.height):
        out.append(f"{folder / 'seqinfo.ini'}: seqLength {info.seq_length}, {info.width}x{info.height} px; the "
                   f"benchmark's {folder.name} has {known.frames} frames of {known.width}x{known.height} px")
    if split == "train" and not (folder / "gt" / "gt.txt").is_file():
        out.append(f"{folder / 'gt' / 'gt.txt'}: missing (a train sequence carries its ground truth)")
    if not (folder / "det" / "det.txt").is_file():
        out.append(f"{folder / 'det' / 'det.txt'}: missing")
    return out


def check_benchmark(folder: Path, bench: Benchmark) -> list[str]:
    """Problems of ``<root>/<NAME>`` against the benchmark's known sequences."""
    if not folder.is_dir():
        return [f"{folder}: missing (passbench data fetch {bench.name} --to {folder.parent})"]
    out = []
    for split, names in bench.splits().items():
        if not (folder / split).is_dir():
            out.append(f"{folder / split}: missing ({len(names)} sequences: {_listed(list(names))})")
            continue
        missing = [n for n in names if not (folder / split / n).is_dir()]
        if missing:
            out.append(f"{folder / split}: {len(missing)} of {len(names)} sequences missing: {_listed(missing)}")
        for n in names:
            if n not in missing:
                out += check_sequence(folder / split / n, split, bench.known.get(n))
    return out


def check_mot(root: Path, names: list[str] | None = None, catalog: dict | None = None) -> dict[str, list[str]]:
    """``{benchmark: problems}`` for the named benchmarks, or every one present under ``root``.

    Raises:
        FileNotFoundError: ``root`` is not a directory, or none of the benchmarks is under it.
    """
    catalog = dict(catalog or _catalog.BENCHMARKS)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    benches = [_catalog.get(n, catalog) for n in names] if names else [b for b in catalog.values() if (root / b.name).is_dir()]
    if not benches:
        raise FileNotFoundError(f"{root}: no MOT benchmark folder ({', '.join(catalog)}) under it; fetch one with "
                                f"`passbench data fetch MOT17 --to {root}`")
    return {b.name: check_benchmark(root / b.name, b) for b in benches}


def check_h36m(root: Path, subjects: tuple[int, ...] = H36M_SUBJECTS) -> list[str]:
    """Problems of ``<root>/Human36M`` (3DMPPE layout): annotation files, and every image folder and image
    the subjects' ``_data.json`` list.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    base = root / "Human36M"
    if not base.is_dir():
        return [f"{base}: missing (Human3.6M in the 3DMPPE layout: Human36M/{{images,annotations}}; it cannot be "
                "downloaded by passbench: request it at vision.imar.ro/human3.6m under its licence, then convert "
                "with 3DMPPE's tool/Human36M/h36m2coco.py or take the 3DMPPE annotation release)"]
    ann, images = base / "annotations", base / "images"
    out = []
    if not images.is_dir():
        out.append(f"{images}: missing")
    for s in subjects:
        files = {k: ann / f"Human36M_subject{s}_{k}.json" for k in H36M_FILES}
        gone = [str(p) for p in files.values() if not p.is_file()]
        if gone:
            out.append(f"subject {s}: missing {', '.join(gone)}")
        if not files["data"].is_file() or not images.is_dir():
            continue
        try:
            data = json.loads(files["data"].read_text())
            names = [str(im["file_name"]) for im in data["images"]]
        except (ValueError, KeyError, TypeError) as e:
            out.append(f"{files['data']}: not a 3DMPPE data file (field 'images[].file_name'): {e}")
            continue
        folders: dict[str, list[str]] = {}
        for n in names:
            folders.setdefault(n.split("/")[0], []).append(n)
        absent = sorted(f for f in folders if not (images / f).is_dir())
        if absent:
            out.append(f"{images}: {len(absent)} of {len(folders)} image folders of subject {s} missing "
                       f"({files['data'].name} lists them): {_listed(absent)}")
        for f in sorted(set(folders) - set(absent)):
            present = set(os.listdir(images / f))
            gone = [n for n in folders[f] if n.split("/")[-1] not in present]
            if gone:
                out.append(f"{images / f}: {len(gone)} of {len(folders[f])} images missing: {_listed(gone)}")
    return out
