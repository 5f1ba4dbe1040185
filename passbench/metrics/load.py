"""Machine load around a timing: the 1-minute load average before and after, against the cores.

A wall-clock timing on a CPU that other jobs share times those jobs too, and the dense twin and the
skipping model suffer unequally when the load changes between their rounds. A speed section therefore
stores the conditions it was taken under (``load_fields``):

* ``load_1m_before`` / ``load_1m_after``: ``os.getloadavg()[0]`` (runnable + uninterruptible tasks,
  exponentially averaged over about a minute) just before the first and just after the last timed
  call; the timing's own threads are part of the second, and of the first when the run did other
  work (tracking) before timing;
* ``cpu_cores``: the CPUs this process may run on (``os.sched_getaffinity``, else ``os.cpu_count``);
* ``loaded``: either load is above ``cpu_cores``, i.e. more runnable tasks than cores at some point of
  the timing, so that some of them waited: the FPS and the ratio to dense are not to be trusted.

``load_warning`` is the text the summary lines print for such a timing. Pure Python; no torch.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["cpu_cores", "load_1m", "load_fields", "load_warning"]


def cpu_cores() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_1m() -> float | None:
    """The 1-minute load average, or None where the OS has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def load_fields(before: float | None, after: float | None, cores: int | None = None) -> dict[str, Any]:
    """The speed-section fields for a timing between load readings ``before`` and ``after``.

    Returns:
        ``{load_1m_before, load_1m_after, cpu_cores, loaded}``; ``loaded`` is None when no load is known.
    """
    cores = cpu_cores() if cores is None else int(cores)
    known = [v for v in (before, after) if v is not None]
    return {"load_1m_before": before, "load_1m_after": after, "cpu_cores": cores,
            "loaded": (max(known) > cores) if known else None}


def load_warning(speed: dict[str, Any]) -> str | None:
    """``"WARNING: timed under load 5.7 > 2 cores ..."`` for a speed section flagged ``loaded``, else None
    (also for sections written before the load was recorded: nothing is known about them)."""
    if not speed.get("loaded"):
        return None
    worst = max(v for v in (speed.get("load_1m_before"), speed.get("load_1m_after")) if v is not None)
    return (f"WARNING: timed under load {worst:.1f} > {speed.get('cpu_cores')} cores (1-min load average): "
            "other jobs shared the CPU, FPS and ratio not reliable; re-time on a quiet machine")
