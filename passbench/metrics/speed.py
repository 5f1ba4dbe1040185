"""FPS / latency / peak-memory meter for one callable (a model forward, a pipeline step).

Protocol (STYLE.md "time on CUDA with synchronisation, after warm-up; state what the timed region
holds"): ``warmup`` untimed calls, then ``iters`` timed calls, each timed individually between two
device synchronisations; latency percentiles are over those per-call times. FPS is frames per
second at the median: ``batch * 1000 / latency_ms_p50`` (= ``1000 / p50`` at batch 1, the streaming
setting of the PASS paper's FPS column). Percentiles use NumPy's default linear interpolation
between order statistics (``np.percentile(..., method="linear")``).

On CUDA each call is timed by a pair of CUDA events recorded on the current stream around it, read
after the end event has completed (``timer="events"``, the default there), after a device
synchronisation before the call so that no earlier queued work is inside the interval; ``timer="wall"``
times the same interval with ``time.perf_counter`` between two synchronisations (what the CPU path
does, without synchronisation). ``precision`` other than ``"fp32"`` runs each call (warm-up included)
under ``torch.autocast`` of that dtype on the device (``"fp16"``: float16, ``"bf16"``: bfloat16), and
the record says so (``"fp16 (autocast)"``): weights stay float32, the autocast-eligible ops (convs,
matmuls) run in the lower precision, as in the usual mixed-precision inference on a GPU or a Jetson.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` after resetting the peak before the timed
loop (tensor allocations only, not the caching allocator's reserve). On CPU, the process's peak
resident set size from ``resource.getrusage(RUSAGE_SELF).ru_maxrss``; that is a lifetime peak of the
whole process (it cannot be reset), so it is an upper bound for the timed region, not its own peak.
"""

from __future__ import annotations

import contextlib
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


PRECISIONS = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}
TIMERS = ("auto", "events", "wall")


def precision_label(precision: str) -> str:
    """The record's ``precision`` value: ``"fp32"``, or e.g. ``"fp16 (autocast)"``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return precision if PRECISIONS[precision] is None else f"{precision} (autocast)"


def autocast(device: Any, precision: str):
    """``torch.autocast`` for ``precision`` on ``device`` (a null context for fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    torch = _torch()
    kind = "cuda" if _is_cuda(device) else "cpu"
    return torch.autocast(device_type=kind, dtype=getattr(torch, PRECISIONS[precision]))


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
        precision: ``"fp32"`` (default), ``"fp16"`` or ``"bf16"``: the latter two run every call under
            ``torch.autocast`` (see the module docstring); the record gets ``precision_label``.
        timed_region: what one call holds; goes into the record verbatim.
        clock: monotonic seconds clock; injectable for tests (default ``time.perf_counter``).
        sync: called before reading the clock; default ``torch.cuda.synchronize`` on CUDA, no-op on
            CPU. Injectable for tests.
        timer: ``"events"`` (CUDA events; CUDA only), ``"wall"`` (clock between synchronisations) or
            ``"auto"`` (events on CUDA unless a clock or sync is injected, else wall).
    """

    def __init__(self, warmup: int = 10, iters: int = 50, device: Any = "cpu", batch: int = 1,
                 precision: str = "fp32", timed_region: str = "callable", *,
                 clock: Callable[[], float] | None = None, sync: Callable[[], None] | None = None,
                 timer: str = "auto") -> None:
        if warmup < 0 or iters < 1:
            raise ValueError(f"SpeedMeter: need warmup >= 0 and iters >= 1, got warmup={warmup}, iters={iters}")
        if batch < 1:
            raise ValueError(f"SpeedMeter: batch must be >= 1, got {batch}")
        if timer not in TIMERS:
            raise ValueError(f"SpeedMeter: timer must be one of {TIMERS}, got {timer!r}")
        precision_label(precision)  # checks the name
        cuda = _is_cuda(device)
        if timer == "events" and not cuda:
            raise ValueError(f"SpeedMeter: timer='events' needs a CUDA device, got device={device!r}")
        self.timer = timer if timer != "auto" else ("events" if cuda and clock is None and sync is None else "wall")
        self.warmup, self.iters, self.device, self.batch = warmup, iters, device, batch
        self.precision, self.timed_region = precision, timed_region
        self.clock = clock or time.perf_counter
        if sync is None and cuda:
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
        def call() -> None:
            with autocast(self.device, self.precision):
                fn()

        for _ in range(self.warmup):
            call()
        cuda = _is_cuda(self.device)
        if cuda:
            torch = _torch()
            self.sync()
            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
        lat = []
        if self.timer == "events":
            with torch.cuda.device(torch.device(self.device)):
                for _ in range(self.iters):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    self.sync()  # the previous call's queued work must not fall inside this interval
                    start.record()
                    call()
                    end.record()
                    end.synchronize()
                    lat.append(float(start.elapsed_time(end)))  # ms
        else:
            for _ in range(self.iters):
                self.sync()  # the previous call's queued work must not leak into this one
                t0 = self.clock()
                call()
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
            device=device_name(self.device), threads=self._threads(), precision=precision_label(self.precision),
            batch=self.batch, timed_region=self.timed_region, peak_mem_mb=float(peak),
            latencies_ms=tuple(lat), warmup=self.warmup, mem_kind=kind,
        )


def measure(fn: Callable[[], Any], *, warmup: int = 10, iters: int = 50, device: Any = "cpu", batch: int = 1,
            precision: str = "fp32", timed_region: str = "callable",
            clock: Callable[[], float] | None = None, sync: Callable[[], None] | None = None,
            timer: str = "auto") -> SpeedResult:
    """One-shot :class:`SpeedMeter` (same arguments) applied to ``fn``."""
    return SpeedMeter(warmup, iters, device, batch, precision, timed_region, clock=clock, sync=sync,
                      timer=timer).measure(fn)
