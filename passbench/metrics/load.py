"""Machine load around a timing: what other processes did with the CPU meanwhile, and the 1-minute load
average before and after, against the cores.

A wall-clock timing on a CPU that other jobs share times those jobs too, and the dense twin and the
skipping model suffer unequally when the load changes between their rounds. A speed section therefore
stores the conditions it was taken under (``load_fields``):

* ``others_cpu_cores``: the CPU time the whole machine was busy during the timing (``/proc/stat``: every
  state but idle and iowait, steal included) minus this process's own CPU time (``time.process_time``, all
  its threads), over the wall time: how many cores other processes kept busy on average. None where there
  is no ``/proc/stat`` (macOS, Windows);
* ``load_1m_before`` / ``load_1m_after``: ``os.getloadavg()[0]`` (runnable + uninterruptible tasks,
  exponentially averaged over about a minute) just before the first and just after the last timed
  call; the timing's own threads are part of the second, and of the first when the run did other
  work (tracking) before timing;
* ``cpu_cores``: the CPUs this process may run on (``os.sched_getaffinity``, else ``os.cpu_count``);
* ``loaded``: other processes took CPU the timing needed, so the FPS and the ratio to dense are not to be
  trusted. With ``others_cpu_cores`` and the timing's thread count known: other processes kept more cores
  busy than the timing left free (``cpu_cores - threads``), by more than ``IDLE_NOISE`` cores (daemons,
  the shell). Otherwise (no ``/proc/stat``): either load average above ``cpu_cores``, i.e. more runnable
  tasks than cores at some point; that rule also counts the timing's own threads, so a 2-thread timing on
  2 cores reads as loaded by itself.

``load_warning`` is the text the summary lines print for such a timing. Pure Python; no torch.
"""

from __future__ import annotations

import os
import time
from typing import Any

__all__ = ["IDLE_NOISE", "cpu_cores", "cpu_sample", "load_1m", "load_fields", "load_warning", "others_cores"]

IDLE_NOISE = 0.25  # cores other processes may keep busy on average without the timing counting as loaded

CpuSample = tuple[float, float, float]  # (monotonic wall s, machine CPU-busy s, this process's CPU s)


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


def cpu_sample(stat: str = "/proc/stat") -> CpuSample | None:
    """Now: (monotonic wall seconds, seconds the whole machine's CPUs were busy since boot, this process's
    CPU seconds), or None where ``stat`` cannot be read or has no aggregate ``cpu`` line."""
    try:
        with open(stat) as f:
            first = f.readline().split()
    except OSError:
        return None
    if len(first) < 5 or first[0] != "cpu":
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal (guest is in user)
    busy = sum(ticks) - ticks[3] - ticks[4]
    return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), time.process_time()


def others_cores(before: CpuSample | None, after: CpuSample | None) -> float | None:
    """How many cores other processes kept busy on average between two ``cpu_sample`` readings (the
    machine's busy time minus this process's, over the wall time), or None when either is unknown."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others) / (after[0] - before[0])


def load_fields(before: float | None, after: float | None, cores: int | None = None, *,
                others: float | None = None, threads: int | None = None) -> dict[str, Any]:
    """The speed-section fields for a timing between load readings ``before`` and ``after``, during which
    other processes kept ``others`` cores busy (``others_cores``), the timing running ``threads`` threads.

    Returns:
        ``{others_cpu_cores, load_1m_before, load_1m_after, cpu_cores, loaded}``; ``loaded`` is None when
        nothing is known.
    """
    cores = cpu_cores() if cores is None else int(cores)
    known = [v for v in (before, after) if v is not None]
    if others is not None and threads is not None:
        loaded = others > max(cores - int(threads), 0) + IDLE_NOISE
    else:
        loaded = (max(known) > cores) if known else None
    return {"others_cpu_cores": None if others is None else round(float(others), 3),
            "load_1m_before": before, "load_1m_after": after, "cpu_cores": cores, "loaded": loaded}


def load_warning(speed: dict[str, Any]) -> str | None:
    """``"WARNING: timed under load 5.7 > 2 cores ..."`` for a speed section flagged ``loaded``, else None
    (also for sections written before the load was recorded: nothing is known about them)."""
    if not speed.get("loaded"):
        return None
    tail = "other jobs shared the CPU, FPS and ratio not reliable; re-time on a quiet machine"
    if speed.get("others_cpu_cores") is not None:
        return (f"WARNING: timed under load: other processes kept {speed['others_cpu_cores']:.1f} of "
                f"{speed.get('cpu_cores')} cores busy beside the timing's {speed.get('threads')} thread(s): {tail}")
    worst = max(v for v in (speed.get("load_1m_before"), speed.get("load_1m_after")) if v is not None)
    return f"WARNING: timed under load {worst:.1f} > {speed.get('cpu_cores')} cores (1-min load average): {tail}"
