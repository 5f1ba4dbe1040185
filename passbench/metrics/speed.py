"""FPS / latency / peak-memory meter for one callable (a model forward, a pipeline step).

Protocol (STYLE.md "time on CUDA with synchronisation, after warm-up; state what the timed region
holds"): ``warmup`` untimed calls, then ``iters`` timed calls, each timed individually between two
device synchronisations; latency percentiles are over those per-call times. FPS is frames per
second at the median: ``batch * 1000 / latency_ms_p50`` (= ``1000 / p50`` at batch 1, the streaming
setting of the PASS paper's FPS column). Percentiles use NumPy's default linear interpolation
between order statistics (``np.percentile(..., method="linear")``).

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` after resetting the peak before the timed
loop (tensor allocations only, not the caching allocator's reserve). On CPU, the process's peak
resident set size from ``resource.getrusage(RUSAGE_SELF).ru_maxrss``; that is a lifetime peak of the
whole process (it cannot be reset), so it is an upper bound for the timed region, not its own peak.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

SCHEMA_KEYS = ("fps", "latency_ms_p50", "latency_ms_p90", "device", "threads", "precision", "batch",
               "timed_region", "peak_mem_mb")


@dataclass(frozen=True)
class SpeedResult:
    """One speed measurement and the conditions it ran under.

    Attributes:
        fps: frames per second at the median latency, ``batch * 1000 / latency_ms_p50``.
        latency_ms_p50: median per-call latency, ms.
        latency_ms_p90: 90th-percentile per-call latency, ms.
        device: device name (e.g. ``"cpu: <processor>"`` or the CUDA device name).
        threads: ``torch.get_num_threads()`` during the run.
        precision: dtype label, e.g. ``"fp32"``.
        batch: frames per call.
        timed_region: what one timed call holds (e.g. ``"model forward, input on device"``).
        peak_mem_mb: peak memory, MiB (see the module docstring for what is measured where).
        latencies_ms: the individual timed latencies, ms (not part of the record schema).
        warmup: untimed calls made before timing.
        mem_kind: what ``peak_mem_mb`` measures.
    """

    fps: float
    latency_ms_p50: float
    latency_ms_p90: float
    device: str
    threads: int
    precision: str
    batch: int
    timed_region: str
    peak_mem_mb: float | None
    latencies_ms: tuple[float, ...] = field(repr=False, default=())
    warmup: int = 0
    mem_kind: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The record's ``speed`` section: exactly :data:`SCHEMA_KEYS`."""
        d = asdict(self)
        return {k: d[k] for k in SCHEMA_KEYS}


def percentile_ms(latencies_ms: Any, q: float) -> float:
    """q-th percentile (0-100) with linear interpolation between order statistics."""
    a = np.asarray(latencies_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timed iterations")
    return float(np.percentile(a, q, method="linear"))


def _torch():
    import torch  # deferred: the meter also times plain Python callables

    return torch


def _is_cuda(device: Any) -> bool:
    return device is not None and str(device).startswith("cuda")


def device_name(device: Any) -> str:
    """Human-readable device name: the CUDA device's name, or ``cpu: <processor / machine>``."""
    if _is_cuda(device):
        torch = _torch()
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    import platform

    return f"cpu: {platform.processor() or platform.machine()}"


def cpu_peak_rss_mb() -> float:
    """Process peak RSS in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


class SpeedMeter:
    """Times ``fn()`` after warm-up; ``measure()`` returns a :class:`SpeedResult`.

    Args:
        warmup: untimed calls first (lazy init, cudnn autotuning, caches).
        iters: timed calls.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:0"`` (or a torch.device); CUDA enables synchronisation
            around each timed call and CUDA peak-memory accounting.
        batch: frames processed per call (for FPS).
        precision: dtype label for the record (``"fp32"``, ``"fp16"``, ...).
        timed_region: what one call holds; goes into the record verbatim.
        clock: monotonic seconds clock; injectable for tests (default ``time.perf_counter``).
        sync: called before reading the clock; default ``torch.cuda.synchronize`` on CUDA, no-op on
            CPU. Injectable for tests.
    """

    def __init__(self, warmup: int = 10, iters: int = 50, device: Any = "cpu", batch: int = 1,
                 precision: str = "fp32", timed_region: str = "callable", *,
                 clock: Callable[[], float] | None = None, sync: Callable[[], None] | None = None) -> None:
        if warmup < 0 or iters < 1:
            raise ValueError(f"SpeedMeter: need warmup >= 0 and iters >= 1, got warmup={warmup}, iters={iters}")
        if batch < 1:
            raise ValueError(f"SpeedMeter: batch must be >= 1, got {batch}")
        self.warmup, self.iters, self.device, self.batch = warmup, iters, device, batch
        self.precision, self.timed_region = precision, timed_region
        self.clock = clock or time.perf_counter
        if sync is None and _is_cuda(device):
            torch = _torch()
            dev = torch.device(device)
            sync = lambda: torch.cuda.synchronize(dev)  # noqa: E731
        self.sync = sync or (lambda: None)

    def _threads(self) -> int:
        try:
            return int(_torch().get_num_threads())
        except ImportError:  # pragma: no cover - torch is a dependency
            return 1

    def measure(self, fn: Callable[[], Any]) -> SpeedResult:
        """Run ``warmup`` untimed then ``iters`` timed calls of ``fn`` and summarise."""
        for _ in range(self.warmup):
            fn()
        cuda = _is_cuda(self.device)
        if cuda:
            torch = _torch()
            self.sync()
            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
        lat = []
        for _ in range(self.iters):
            self.sync()  # the previous call's queued work must not leak into this one
            t0 = self.clock()
            fn()
            self.sync()
            lat.append((self.clock() - t0) * 1000.0)
        if cuda:
            peak, kind = torch.cuda.max_memory_allocated(torch.device(self.device)) / 2**20, "cuda max_memory_allocated"
        else:
            peak, kind = cpu_peak_rss_mb(), "process peak RSS (lifetime)"
        p50, p90 = percentile_ms(lat, 50), percentile_ms(lat, 90)
        if p50 <= 0:
            raise ValueError(f"SpeedMeter: median latency {p50} ms is not positive (clock resolution?)")
        return SpeedResult(
            fps=self.batch * 1000.0 / p50, latency_ms_p50=p50, latency_ms_p90=p90,
            device=device_name(self.device), threads=self._threads(), precision=self.precision,
            batch=self.batch, timed_region=self.timed_region, peak_mem_mb=float(peak),
            latencies_ms=tuple(lat), warmup=self.warmup, mem_kind=kind,
        )


def measure(fn: Callable[[], Any], *, warmup: int = 10, iters: int = 50, device: Any = "cpu", batch: int = 1,
            precision: str = "fp32", timed_region: str = "callable",
            clock: Callable[[], float] | None = None, sync: Callable[[], None] | None = None) -> SpeedResult:
    """One-shot :class:`SpeedMeter` (same arguments) applied to ``fn``."""
    return SpeedMeter(warmup, iters, device, batch, precision, timed_region, clock=clock, sync=sync).measure(fn)
