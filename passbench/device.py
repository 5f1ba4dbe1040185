"""Where a row runs and at which precision: ``--device cpu|cuda|cuda:N`` / ``$PASSBENCH_DEVICE`` and
``--precision fp32|fp16|bf16``, for ``run``, ``reproduce``, ``figure``, ``leaderboard add``, ``regress`` and
``passbench speed`` (``python -m passbench.train`` takes ``--device`` too).

A row's device and precision are config keys, ``speed.device`` and ``speed.precision``
(``passbench.config.SpeedCfg``): the command line turns its options into those overrides
(:func:`overrides`; an option wins over ``$PASSBENCH_DEVICE``, which wins over the config), so the
resolved config in every record says where the row ran. The runner moves the model, its gates and
skip state, the block-sparse engine's tables and the decoding there, runs every forward under
``torch.autocast`` for fp16 / bf16 (:func:`autocast`), applies the CPU budget ``max_cpu_gmacs`` only on
the CPU, and records the device name, precision, torch and CUDA versions (:func:`run_env`).
"""

from __future__ import annotations

import os
import re
from typing import Any

from passbench.errors import UserError

DEVICE_ENV = "PASSBENCH_DEVICE"
PRECISIONS = ("fp32", "fp16", "bf16")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


class DeviceError(UserError, ValueError):
    """A device or precision that is malformed or not available here (a usage error: exit 2; a
    ``ValueError`` like ``passbench.config.ConfigError``)."""


def add_device_options(parser: Any) -> None:
    """``--device`` and ``--precision`` on an argparse parser (both default to None: the config's)."""
    parser.add_argument("--device", default=None,
                        help=f"cpu, cuda, cuda:N: where the rows run (default: ${DEVICE_ENV}, else the config's "
                             "speed.device, cpu); the CPU budget max_cpu_gmacs applies on the CPU only")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="fp16 / bf16: every forward under torch.autocast, accuracy and timing alike "
                             "(default: the config's speed.precision, fp32)")


def requested(device: str | None) -> str | None:
    """The device asked for: ``device`` (an option), else ``$PASSBENCH_DEVICE``, else None (the config's)."""
    return device or os.environ.get(DEVICE_ENV) or None


def overrides(device: str | None = None, precision: str | None = None) -> list[str]:
    """Config overrides for the command-line options (``speed.device=...``, ``speed.precision=...``).

    Raises:
        DeviceError: a malformed device or an unknown precision (names the option or variable).
    """
    out = []
    dev = requested(device)
    if dev is not None:
        check_device(dev, "--device" if device else f"${DEVICE_ENV}")
        out.append(f"speed.device={dev}")
    if precision is not None:
        check_precision(precision, "--precision")
        out.append(f"speed.precision={precision}")
    return out


def check_device(device: str, where: str = "speed.device") -> str:
    """``device`` if it is ``cpu`` / ``cuda`` / ``cuda:N`` and usable here.

    Raises:
        DeviceError: malformed, or CUDA asked for and not available (or ``N`` past the device count).
    """
    if not _DEVICE.match(str(device)):
        raise DeviceError(f"{where}: device {device!r} is not cpu, cuda or cuda:N")
    if str(device).startswith("cuda"):
        import torch  # noqa: PLC0415

        if not torch.cuda.is_available():
            raise DeviceError(f"{where}: device {device!r}: no CUDA device is available here (torch {torch.__version__},"
                              f" built for CUDA {torch.version.cuda})")
        idx = int(str(device).split(":")[1]) if ":" in str(device) else 0
        if idx >= torch.cuda.device_count():
            raise DeviceError(f"{where}: device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return str(device)


def check_precision(precision: str, where: str = "speed.precision") -> str:
    if precision not in PRECISIONS:
        raise DeviceError(f"{where}: precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def check(cfg: Any) -> tuple[str, str]:
    """``(device, precision)`` of a resolved config, both checked (:class:`DeviceError` naming the key)."""
    return (check_device(cfg.speed.device, f"{cfg.name}: speed.device"),
            check_precision(cfg.speed.precision, f"{cfg.name}: speed.precision"))


def autocast(device: str, precision: str):
    """``torch.autocast`` of ``precision`` on ``device`` (a null context for fp32)."""
    from passbench.metrics.speed import autocast as _autocast  # noqa: PLC0415

    return _autocast(device, precision)


def run_env(device: str, precision: str) -> dict[str, Any]:
    """A record's ``env``: git sha, python, torch (``passbench.records.env_info``) plus ``device`` (its name,
    e.g. ``cuda: NVIDIA H200`` or ``cpu: x86_64``), ``precision``, ``cuda`` (the CUDA version torch was
    built with; None for a CPU build) and ``cudnn``."""
    import torch  # noqa: PLC0415

    from passbench.metrics.speed import device_name, precision_label  # noqa: PLC0415
    from passbench.records import env_info  # noqa: PLC0415

    env = env_info(device_name(device))
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    env.update(precision=precision_label(precision), cuda=torch.version.cuda, cudnn=cudnn)
    return env


def to_device(model: Any, device: str) -> Any:
    """``model`` moved to ``device`` (a no-op on the CPU)."""
    return model if device == "cpu" else model.to(device)


def set_threads(n: int) -> None:
    """Give the row ``n`` threads in every native pool: torch's intra-op pool and, through threadpoolctl,
    the BLAS (OpenBLAS / MKL) and OpenMP pools that NumPy and SciPy use (each bundles its own OpenBLAS).

    ``torch.set_num_threads`` alone leaves SciPy's OpenBLAS at one thread per core: the tracker's small
    Kalman-filter products then busy-wait on every core. Measured on one trade-off row (2 cores, quiet
    machine, ``docs/logs/executor/threads.log``): 36.0 s at 157 % CPU with OpenBLAS free, 32.0 s at 100 % with
    it held to one thread, the same record. A row scheduled beside another (``--executor ray``) must use what
    it declared (``speed.threads``), not every core. The limit holds for the process until set again.
    """
    import importlib  # noqa: PLC0415

    import torch  # noqa: PLC0415

    torch.set_num_threads(n)
    # The speed path runs without SciPy and threadpoolctl (a Jetson: tests/test_speed_imports.py): torch only.
    try:
        importlib.import_module("scipy.linalg")  # SciPy's own OpenBLAS: loaded now, so that the limit reaches it
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415
    except ImportError:
        return
    threadpool_limits(limits=n)  # the pools loaded now (threadpoolctl cannot reach a library loaded later)
