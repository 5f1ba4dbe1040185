"""The MOTChallenge benchmarks ``passbench data fetch`` knows: archive names and sequence names.

Archives are the official ``https://motchallenge.net/data/<NAME>.zip`` (``--mirror URL`` or
``$PASSBENCH_MIRROR`` replaces the base URL: ``<URL>/<NAME>.zip``).

Sequence names (train / test folders), as listed by MOTChallenge and, identically, by FairMOT's
``src/track.py`` / ``src/track_half.py`` and several independent loaders (checked in two repositories
each). MOT17 ships every sequence three times, one folder per public detector (-DPM, -FRCNN, -SDP:
the same images and ground truth).

Frame counts and image sizes are checked against each sequence's own ``seqinfo.ini`` (which the
archive carries) and against its files; for the MOT17 train sequences they are also checked against
the project's MOT17 scene metadata (``passbench.datasets.scenes``, verified there). No other counts
are written here: a number typed from memory would reject a correct download.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

DEFAULT_MIRROR = "https://motchallenge.net/data"
MIRROR_ENV = "PASSBENCH_MIRROR"


@dataclass(frozen=True)
class Known:
    """What is known about one sequence besides its own ``seqinfo.ini``: frames, width, height (px)."""

    frames: int
    width: int
    height: int


@dataclass(frozen=True)
class Benchmark:
    """One MOTChallenge benchmark as ``data fetch`` / ``data check`` see it.

    Attributes:
        name: folder under the data root (``MOT17``).
        archive: the archive's file name under the mirror (``MOT17.zip``).
        train, test: sequence folder names below ``<name>/train`` and ``<name>/test``.
        known: sequence -> :class:`Known` where the project holds verified metadata.
    """

    name: str
    archive: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    known: Mapping[str, Known] = field(default_factory=dict)

    def splits(self) -> dict[str, tuple[str, ...]]:
        return {"train": self.train, "test": self.test}


_MOT15_TRAIN = ("ADL-Rundle-6", "ADL-Rundle-8", "ETH-Bahnhof", "ETH-Pedcross2", "ETH-Sunnyday", "KITTI-13", "KITTI-17",
                "PETS09-S2L1", "TUD-Campus", "TUD-Stadtmitte", "Venice-2")
_MOT15_TEST = ("ADL-Rundle-1", "ADL-Rundle-3", "AVG-TownCentre", "ETH-Crossing", "ETH-Jelmoli", "ETH-Linthescher",
               "KITTI-16", "KITTI-19", "PETS09-S2L2", "TUD-Crossing", "Venice-1")
_MOT16_TRAIN = tuple(f"MOT16-{n:02d}" for n in (2, 4, 5, 9, 10, 11, 13))
_MOT16_TEST = tuple(f"MOT16-{n:02d}" for n in (1, 3, 6, 7, 8, 12, 14))
_DETECTORS = ("DPM", "FRCNN", "SDP")
_MOT17_TRAIN = tuple(f"MOT17-{n:02d}-{d}" for n in (2, 4, 5, 9, 10, 11, 13) for d in _DETECTORS)
_MOT17_TEST = tuple(f"MOT17-{n:02d}-{d}" for n in (1, 3, 6, 7, 8, 12, 14) for d in _DETECTORS)
_MOT20_TRAIN = tuple(f"MOT20-{n:02d}" for n in (1, 2, 3, 5))
_MOT20_TEST = tuple(f"MOT20-{n:02d}" for n in (4, 6, 7, 8))


def _mot17_known() -> dict[str, Known]:
    from passbench.datasets.scenes import MOT17_TRAIN  # noqa: PLC0415 - no torch, small

    return {seq: Known(MOT17_TRAIN[seq.rsplit("-", 1)[0]].frames, MOT17_TRAIN[seq.rsplit("-", 1)[0]].width,
                       MOT17_TRAIN[seq.rsplit("-", 1)[0]].height) for seq in _MOT17_TRAIN}


BENCHMARKS: Mapping[str, Benchmark] = MappingProxyType({
    "MOT15": Benchmark("MOT15", "MOT15.zip", _MOT15_TRAIN, _MOT15_TEST),
    "MOT16": Benchmark("MOT16", "MOT16.zip", _MOT16_TRAIN, _MOT16_TEST),
    "MOT17": Benchmark("MOT17", "MOT17.zip", _MOT17_TRAIN, _MOT17_TEST, MappingProxyType(_mot17_known())),
    "MOT20": Benchmark("MOT20", "MOT20.zip", _MOT20_TRAIN, _MOT20_TEST),
})


def get(name: str, catalog: Mapping[str, Benchmark] | None = None) -> Benchmark:
    """The benchmark called ``name`` (case-insensitive) in ``catalog`` (default :data:`BENCHMARKS`).

    Raises:
        KeyError: unknown name, listing the known ones (and a close match).
    """
    catalog = BENCHMARKS if catalog is None else catalog
    for key, bench in catalog.items():
        if key.lower() == name.lower():
            return bench
    close = difflib.get_close_matches(name.upper(), list(catalog), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise KeyError(f"unknown benchmark {name!r} (known: {', '.join(catalog)}){hint}")


def archive_url(bench: Benchmark, mirror: str | None = None) -> str:
    """``<mirror>/<archive>``: ``mirror`` given, else ``$PASSBENCH_MIRROR``, else :data:`DEFAULT_MIRROR`."""
    import os  # noqa: PLC0415

    base = mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    return f"{base.rstrip('/')}/{bench.archive}"
