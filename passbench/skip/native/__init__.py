"""Native (C++) row gather / scatter for the block-sparse kernel's channels-last path.

``gather_scatter.cpp`` (beside this file) is compiled on first use with ``torch.utils.cpp_extension``
(g++; about a minute on 2 cores) into ``.cache/native/<torch version>-<source hash>/`` of the checkout and
loaded from there afterwards (milliseconds). Nothing else needs it: when the build or the load fails (no
compiler, no headers), or ``PASSBENCH_NATIVE=0``, ``available()`` is False, a one-line warning says why,
and ``passbench.skip.sparse`` uses its pure-PyTorch ops, which give the same bits
(``tests/test_native.py`` checks both paths agree exactly).

Ops (CPU, float16 / bfloat16 / float32 / float64):

* ``gather_rows(x2d, table, patches) -> (n * W, C)``: row ``table[p, w]`` of the (rows, C) matrix ``x2d``
  for each active patch ``p`` in ``patches`` and window pixel ``w``; zeros where the table holds -1;
* ``scatter_rows(out2d, table, patches, src, accumulate)``: row ``q`` of patch ``i``'s result
  (``src[i * Q + q]``) into row ``table[patches[i], q]`` of ``out2d`` (added if ``accumulate``), skipped
  where the table holds -1;
* ``copy_rows(dst2d, src2d, table, patches)``: rows ``table[p, q]`` of ``src2d`` into the same rows of
  ``dst2d`` (two matrices of one shape), for each listed patch (the dispatcher's dense-path blend).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import warnings
from pathlib import Path

import torch

ENV = "PASSBENCH_NATIVE"
_SRC = Path(__file__).resolve().parent / "gather_scatter.cpp"
_STATE: dict = {}
_LOCK = threading.Lock()


def build_dir() -> Path:
    """Where the compiled library lives: ``<checkout>/.cache/native/<torch version>-<source sha256[:12]>``
    (``~/.cache/passbench/native/...`` for an installed, non-editable package)."""
    tag = hashlib.sha256(_SRC.read_bytes()).hexdigest()[:12]
    ver = torch.__version__.replace("+", "_")
    repo = Path(__file__).resolve().parents[3]
    root = repo / ".cache" if (repo / "pyproject.toml").is_file() else Path.home() / ".cache" / "passbench"
    return root / "native" / f"{ver}-{tag}"


def _load() -> str | None:
    """Build (once) and load the library; None on success, else the reason it is unavailable."""
    if os.environ.get(ENV, "1") == "0":
        return f"{ENV}=0"
    try:
        from torch.utils import cpp_extension

        out = build_dir()
        out.mkdir(parents=True, exist_ok=True)
        lib = out / "passbench_native.so"
        if lib.is_file():
            torch.ops.load_library(str(lib))
        else:
            print(f"passbench: building the native gather/scatter once into {out} (about a minute)...",
                  file=sys.stderr, flush=True)
            cpp_extension.load(name="passbench_native", sources=[str(_SRC)], build_directory=str(out),
                               extra_cflags=["-O3"], is_python_module=False, verbose=False)
        torch.ops.passbench_native.gather_rows  # noqa: B018 - raises when the ops are not registered
    except Exception as e:  # noqa: BLE001 - any build / load failure means: use the PyTorch ops
        return f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300] if str(e).strip() else ''}"
    return None


def available() -> bool:
    """Whether the native ops are loaded (building them on the first call); warns once when not."""
    if "why" not in _STATE:
        with _LOCK:
            if "why" not in _STATE:
                why = _load()
                _STATE["why"] = why
                if why is not None and os.environ.get(ENV, "1") != "0":
                    warnings.warn(f"passbench.skip.native unavailable ({why}); the block-sparse kernel uses its "
                                  "PyTorch gather/scatter (same results, slower)", RuntimeWarning, stacklevel=2)
    return _STATE["why"] is None


def unavailable_reason() -> str | None:
    """Why ``available()`` is False (None when it is True or was never asked)."""
    return _STATE.get("why")


def gather_rows(x2d: torch.Tensor, table: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """See the module docstring; requires ``available()``."""
    return torch.ops.passbench_native.gather_rows(x2d, table, patches)


def scatter_rows(out2d: torch.Tensor, table: torch.Tensor, patches: torch.Tensor, src: torch.Tensor,
                 accumulate: bool) -> None:
    """See the module docstring; requires ``available()``."""
    torch.ops.passbench_native.scatter_rows(out2d, table, patches, src, accumulate)


def copy_rows(dst2d: torch.Tensor, src2d: torch.Tensor, table: torch.Tensor, patches: torch.Tensor) -> None:
    """See the module docstring; requires ``available()``."""
    torch.ops.passbench_native.copy_rows(dst2d, src2d, table, patches)
