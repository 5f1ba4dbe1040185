"""MOT17 train-sequence metadata behind the PASS paper's Table 4 (environment sensitivity).

Table 4 of the paper (``/work/shared/papers/pass-aaai23.md``) reports MOTA in four columns named
by scene, not by sequence. The mapping below matches each column's wording to the MOTChallenge
descriptions (REFERENCE.md 3.2):

* "People walking around a large square"        -> MOT17-02 (fixed camera)
* "Night pedestrian street from elevated view"  -> MOT17-04 (fixed camera)
* "Filmed from a bus on busy intersections"     -> MOT17-13 (moving camera)
* "Forward moving camera in a busy market"      -> MOT17-11 (moving camera; MOTChallenge says
  "shopping mall")

Provenance of every attribute is recorded in :data:`PROVENANCE`:

* ``description``: motchallenge.net text, found verbatim in two repositories (verified there).
* ``fps, width, height, frames``: consistent across several repositories' run scripts and with
  FairMOT's ``mot17.half``; 02 and 04 also checked against the sample ``seqinfo.ini`` files by the
  tests (verified).
* ``camera`` (static/moving) and ``night``: follow from the descriptions (derived).
* ``viewpoint`` (low/medium/high) and ``indoor``: the MOT16 paper's sequence table **from memory,
  unverified** (REFERENCE.md 3.2 and 6). 11 "shopping mall" makes it indoor by its description too.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class SceneInfo:
    """One MOT17 train sequence (identical across its -DPM/-FRCNN/-SDP copies).

    Attributes:
        seq: ``"MOT17-02"`` (detector suffix dropped).
        description: MOTChallenge scene description.
        camera: ``"static"`` or ``"moving"``.
        viewpoint: ``"low"``, ``"medium"`` or ``"high"`` (unverified, see module docstring).
        night: filmed at night.
        indoor: filmed indoors (unverified for 09).
        fps: frames per second.
        width, height: frame size in pixels.
        frames: ``seqLength``.
        table4_column: the PASS Table 4 column this sequence stands for, or None.
    """

    seq: str
    description: str
    camera: str
    viewpoint: str
    night: bool
    indoor: bool
    fps: int
    width: int
    height: int
    frames: int
    table4_column: str | None = None


VERIFIED = "verified"
DERIVED = "derived from the description"
UNVERIFIED = "MOT16 paper from memory, unverified"

PROVENANCE = MappingProxyType({
    "description": VERIFIED, "fps": VERIFIED, "width": VERIFIED, "height": VERIFIED, "frames": VERIFIED,
    "camera": DERIVED, "night": DERIVED, "viewpoint": UNVERIFIED, "indoor": UNVERIFIED,
})

TABLE4_COLUMNS = (
    "People walking around a large square",
    "Night pedestrian street from elevated view",
    "Filmed from a bus on busy intersections",
    "Forward moving camera in a busy market",
)

_ROWS = (
    SceneInfo("MOT17-02", "People walking around a large square.", "static", "medium", False, False,
              30, 1920, 1080, 600, TABLE4_COLUMNS[0]),
    SceneInfo("MOT17-04", "Pedestrian street at night, elevated viewpoint", "static", "high", True, False,
              30, 1920, 1080, 1050, TABLE4_COLUMNS[1]),
    SceneInfo("MOT17-05", "Street scene from a moving platform", "moving", "medium", False, False,
              14, 640, 480, 837),
    SceneInfo("MOT17-09", "A pedestrian street scene filmed from a low angle.", "static", "low", False, True,
              30, 1920, 1080, 525),
    SceneInfo("MOT17-10", "A pedestrian scene filmed at night by a moving camera", "moving", "medium", True, False,
              30, 1920, 1080, 654),
    SceneInfo("MOT17-11", "Forward moving camera in a busy shopping mall", "moving", "medium", False, True,
              30, 1920, 1080, 900, TABLE4_COLUMNS[3]),
    SceneInfo("MOT17-13", "Filmed from a bus (2nd storey) on a busy intersection", "moving", "high", False, False,
              25, 1920, 1080, 750, TABLE4_COLUMNS[2]),
)

MOT17_TRAIN = MappingProxyType({r.seq: r for r in _ROWS})


def scene_info(seq: str) -> SceneInfo:
    """Metadata of a MOT17 train sequence by any of its names (``MOT17-04``, ``MOT17-04-FRCNN``).

    Raises:
        KeyError: not a MOT17 train sequence.
    """
    key = "-".join(seq.split("/")[-1].split("-")[:2])
    if key not in MOT17_TRAIN:
        raise KeyError(f"{seq!r} is not a MOT17 train sequence; known: {sorted(MOT17_TRAIN)}")
    return MOT17_TRAIN[key]


def table4_sequences() -> dict[str, str]:
    """Table 4 column title -> MOT17 sequence, in the paper's column order."""
    by_col = {r.table4_column: r.seq for r in _ROWS if r.table4_column}
    return {c: by_col[c] for c in TABLE4_COLUMNS}
