"""Where things live: the data root and the results folder.

The data root resolves, in order: an explicit ``--data-root`` argument, the ``PASSBENCH_DATA``
environment variable, then ``../shared/data`` beside the repository checkout (the built-in sample
data). Official layouts below it: ``MOT15/train/<seq>``, ``MOT17/train/<seq>``,
``MOT17-mini/train/<seq>``, ``Human36M/{images,annotations}``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
RESULTS = REPO_ROOT / "results"


class DataRootError(FileNotFoundError):
    """No usable data root was found."""


def resolve_data_root(data_root: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root as an existing directory, or raise saying where it looked.

    Args:
        data_root: explicit root (e.g. from ``--data-root``); wins over everything else.
    """
    tried: list[str] = []
    if data_root is not None:
        p = Path(data_root).expanduser()
        if p.is_dir():
            return p.resolve()
        raise DataRootError(f"--data-root {p} is not a directory")
    env = os.environ.get("PASSBENCH_DATA")
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return p.resolve()
        raise DataRootError(f"PASSBENCH_DATA={env} is not a directory")
    tried.append("PASSBENCH_DATA (unset)")
    if SAMPLE_DATA.is_dir():
        return SAMPLE_DATA
    tried.append(str(SAMPLE_DATA))
    raise DataRootError(
        "no data root found; looked at: " + ", ".join(tried) + ". Pass --data-root or set PASSBENCH_DATA."
    )
