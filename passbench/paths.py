"""Where things live: the data root and the results folder.

The data root resolves, in order: an explicit ``--data-root`` argument (or a config's
``dataset.data_root``), the ``PASSBENCH_DATA`` environment variable, then ``../shared/data`` beside
the repository checkout (the built-in sample data). Official layouts below it: ``MOT15/train/<seq>``,
``MOT17/train/<seq>``, ``MOT17-mini/train/<seq>``, ``Human36M/{images,annotations}``.

A root that was *given* (argument, config or environment) and does not exist is the user's error
(``DataRootError``), never a reason to skip a row; only the default root may be absent or lack a
dataset, which makes a row "not runnable here". Records store the root as given (``DataRoot.label``),
never this machine's absolute path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from passbench.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()
SAMPLE_DATA_LABEL = "../shared/data"  # SAMPLE_DATA as records name it (relative to the checkout)
RESULTS = REPO_ROOT / "results"


class DataRootError(UserError, FileNotFoundError):
    """No usable data root: a given one does not exist (``given`` True), or none was found."""

    def __init__(self, message: str, given: bool = True) -> None:
        super().__init__(message)
        self.given = given


@dataclass(frozen=True)
class DataRoot:
    """A resolved data root and how it was named.

    Attributes:
        path: the existing directory (absolute; for opening files only, never stored).
        label: what records store: the argument as given (an absolute one relative to the repository
            checkout, e.g. ``../shared/data``), ``$PASSBENCH_DATA``, or ``../shared/data`` by default.
        default: True when nothing was given (the built-in sample data): a dataset missing there makes
            a row "not runnable here"; under a given root it is the user's error.
    """

    path: Path
    label: str
    default: bool

    def describe(self) -> str:
        """``'--data-root DIR'`` / ``'PASSBENCH_DATA=DIR'`` (for error messages, which are never stored) /
        ``'the default data root ../shared/data'`` (also in skip-marker reasons)."""
        if self.default:  # the only form stored (in skip-marker reasons): no machine path in it
            return f"the default data root {self.label}"
        return f"PASSBENCH_DATA={self.path}" if self.label == "$PASSBENCH_DATA" else f"--data-root {self.path}"


def _label(given: str | os.PathLike[str]) -> str:
    s = os.fspath(given)
    if not os.path.isabs(s):
        return s
    return os.path.relpath(s, REPO_ROOT)  # never the machine's absolute path in a record


def find_data_root(data_root: str | os.PathLike[str] | None = None) -> DataRoot:
    """Resolve the data root (see the module docstring) and say how it was named.

    Args:
        data_root: explicit root (``--data-root`` or a config's ``dataset.data_root``); wins over
            everything else.

    Raises:
        DataRootError: a given root (argument or ``PASSBENCH_DATA``) is not a directory (``given``
            True), or nothing was given and the default root does not exist (``given`` False).
    """
    if data_root is not None:
        p = Path(data_root).expanduser()
        if p.is_dir():
            return DataRoot(p.resolve(), _label(data_root), default=False)
        raise DataRootError(f"--data-root {data_root} is not a directory")
    env = os.environ.get("PASSBENCH_DATA")
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return DataRoot(p.resolve(), "$PASSBENCH_DATA", default=False)
        raise DataRootError(f"PASSBENCH_DATA={env} is not a directory")
    if SAMPLE_DATA.is_dir():
        return DataRoot(SAMPLE_DATA, SAMPLE_DATA_LABEL, default=True)
    raise DataRootError(
        f"no data root found; looked at: PASSBENCH_DATA (unset), {SAMPLE_DATA}. Pass --data-root or set "
        "PASSBENCH_DATA.", given=False)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_vars(text: str) -> str:
    """``text`` with every ``${NAME}`` replaced by the environment variable ``NAME`` (e.g. a config's
    ``model.weights: ${FAIRMOT_DLA34}``; the config and its records keep the unexpanded text).

    Raises:
        KeyError: a named variable is unset or empty (the variable's name).
    """
    def sub(m: re.Match) -> str:
        val = os.environ.get(m.group(1))
        if not val:
            raise KeyError(m.group(1))
        return val

    return _VAR.sub(sub, text)


def resolve_data_root(data_root: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root as an existing directory, or raise saying where it looked.

    Args:
        data_root: explicit root (e.g. from ``--data-root``); wins over everything else.

    Raises:
        DataRootError: see ``find_data_root``.
    """
    return find_data_root(data_root).path
