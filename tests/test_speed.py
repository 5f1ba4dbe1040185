"""Speed meter with an injected fake clock: no real timing is asserted."""

from __future__ import annotations

import pytest

from passbench.metrics import speed as S


class FakeClock:
    """A clock that only moves when the fake workload says so; logs clock reads and syncs."""

    def __init__(self) -> None:
        self.t = 0.0
        self.log: list[str] = []

    def __call__(self) -> float:
        self.log.append("clock")
        return self.t

    def sync(self) -> None:
        self.log.append("sync")


def _workload(clock: FakeClock, durations_ms: list[float]):
    calls = iter(durations_ms)
    n = {"calls": 0}

    def fn() -> None:
        n["calls"] += 1
        clock.log.append("fn")
        clock.t += next(calls) / 1000.0

    return fn, n


def test_warmup_excluded_and_percentiles_by_hand():
    clock = FakeClock()
    # 3 warm-up calls of 1000 ms (must not count), then 10 timed calls of 1..10 ms, in shuffled order.
    timed = [7.0, 1.0, 10.0, 3.0, 5.0, 2.0, 9.0, 4.0, 8.0, 6.0]
    fn, n = _workload(clock, [1000.0] * 3 + timed)
    r = S.measure(fn, warmup=3, iters=10, clock=clock, sync=clock.sync, batch=1, timed_region="fake")
    assert n["calls"] == 13
    assert list(r.latencies_ms) == pytest.approx(timed)
    # sorted 1..10: median = (5 + 6) / 2 = 5.5; p90 at rank 0.9 * 9 = 8.1 -> 9 + 0.1 * (10 - 9) = 9.1
    assert r.latency_ms_p50 == pytest.approx(5.5)
    assert r.latency_ms_p90 == pytest.approx(9.1)
    assert r.fps == pytest.approx(1000.0 / 5.5)
    assert r.warmup == 3 and r.timed_region == "fake"


def test_fps_counts_frames_per_call():
    clock = FakeClock()
    fn, _ = _workload(clock, [20.0] * 5)
    r = S.measure(fn, warmup=0, iters=5, batch=4, clock=clock, sync=clock.sync)
    assert r.latency_ms_p50 == pytest.approx(20.0) and r.fps == pytest.approx(4 * 1000.0 / 20.0)


def test_sync_brackets_every_timed_call():
    clock = FakeClock()
    fn, _ = _workload(clock, [1.0] * 4)
    S.measure(fn, warmup=1, iters=3, clock=clock, sync=clock.sync)
    timed_log = clock.log[1:]  # after the single warm-up "fn"
    assert clock.log[0] == "fn"
    assert timed_log == ["sync", "clock", "fn", "sync", "clock"] * 3


def test_as_dict_matches_record_schema():
    from passbench.records import _REQUIRED_RUN

    clock = FakeClock()
    fn, _ = _workload(clock, [2.0] * 3)
    d = S.measure(fn, warmup=0, iters=3, clock=clock, sync=clock.sync, precision="fp32").as_dict()
    assert tuple(d) == S.SCHEMA_KEYS
    assert set(_REQUIRED_RUN["speed"]) <= set(d)
    assert d["device"].startswith("cpu") and d["threads"] >= 1 and d["peak_mem_mb"] > 0


def test_percentile_helper_and_bad_args():
    assert S.percentile_ms([4.0], 90) == 4.0
    assert S.percentile_ms([1.0, 3.0], 50) == 2.0
    with pytest.raises(ValueError, match="no timed"):
        S.percentile_ms([], 50)
    with pytest.raises(ValueError, match="iters"):
        S.SpeedMeter(iters=0)
    with pytest.raises(ValueError, match="batch"):
        S.SpeedMeter(batch=0)


def test_real_cpu_smoke_torch_forward():
    torch = pytest.importorskip("torch")
    x = torch.randn(1, 3, 32, 32)
    conv = torch.nn.Conv2d(3, 8, 3)
    with torch.no_grad():
        r = S.measure(lambda: conv(x), warmup=2, iters=5, timed_region="conv forward")
    assert r.latency_ms_p90 >= r.latency_ms_p50 > 0 and r.mem_kind.startswith("process peak RSS")


@pytest.mark.gpu
def test_cuda_peak_memory_and_sync():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    x = torch.randn(256, 256, device="cuda")
    r = S.measure(lambda: x @ x, warmup=2, iters=5, device="cuda")
    assert r.device.startswith("cuda") and r.peak_mem_mb > 0 and r.mem_kind.startswith("cuda")


def test_autocast_precision_wraps_every_call_on_cpu():
    torch = pytest.importorskip("torch")
    seen = []

    def fn() -> None:
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))

    r = S.measure(fn, warmup=2, iters=3, precision="bf16", timed_region="autocast probe")
    assert len(seen) == 5 and all(on and dt == torch.bfloat16 for on, dt in seen)  # warm-up calls too
    assert r.precision == "bf16 (autocast)" and r.as_dict()["precision"] == "bf16 (autocast)"
    seen.clear()
    assert S.measure(fn, warmup=0, iters=2).precision == "fp32"
    assert seen == [(False, seen[0][1])] * 2  # fp32: no autocast
    # a conv under fp16 / bf16 autocast really runs in that dtype (the meter's context reaches the model)
    conv = torch.nn.Conv2d(3, 4, 3)
    out = []
    S.measure(lambda: out.append(conv(torch.randn(1, 3, 8, 8)).dtype), warmup=0, iters=1, precision="bf16")
    assert out == [torch.bfloat16]


def test_precision_and_timer_are_checked():
    with pytest.raises(ValueError, match="precision must be one of"):
        S.SpeedMeter(precision="fp8")
    with pytest.raises(ValueError, match="timer must be one of"):
        S.SpeedMeter(timer="stopwatch")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        S.SpeedMeter(timer="events", device="cpu")
    assert S.SpeedMeter().timer == "wall"
    assert S.precision_label("fp16") == "fp16 (autocast)"


@pytest.mark.gpu
def test_cuda_events_time_the_call_and_fp16_autocast():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    x = torch.randn(2048, 2048, device="cuda")
    meter = S.SpeedMeter(warmup=3, iters=5, device="cuda")
    assert meter.timer == "events"
    ev = meter.measure(lambda: x @ x)
    wall = S.measure(lambda: x @ x, warmup=3, iters=5, device="cuda", timer="wall")
    assert ev.latency_ms_p50 > 0 and wall.latency_ms_p50 > 0
    # the events interval holds the kernel: not shorter than a tenth of the wall-clock interval around it
    assert ev.latency_ms_p50 > 0.1 * wall.latency_ms_p50
    dt = []
    r = S.measure(lambda: dt.append((x @ x).dtype), warmup=1, iters=2, device="cuda", precision="fp16")
    assert set(dt) == {torch.float16} and r.precision == "fp16 (autocast)" and r.device.startswith("cuda")


def test_fp16_autocast_on_cpu_runs_in_half_and_a_bad_precision_is_named():
    torch = pytest.importorskip("torch")
    conv = torch.nn.Conv2d(3, 4, 3)
    out = []
    S.measure(lambda: out.append(conv(torch.randn(1, 3, 8, 8)).dtype), warmup=0, iters=1, precision="fp16")
    assert out == [torch.float16]  # not autocast's CPU default (bf16)
    with pytest.raises(ValueError, match=r"^precision must be one of \['bf16', 'fp16', 'fp32'\], got 'fp8'$"):
        S.autocast("cpu", "fp8")


def test_a_clock_that_does_not_move_is_refused_and_the_result_keeps_the_batch():
    clock = FakeClock()
    fn, _ = _workload(clock, [0.0] * 3)
    with pytest.raises(ValueError, match=r"^SpeedMeter: median latency 0\.0 ms is not positive \(clock resolution\?\)$"):
        S.measure(fn, warmup=0, iters=3, clock=clock, sync=clock.sync)
    fn, _ = _workload(clock, [10.0] * 3)
    assert S.measure(fn, warmup=0, iters=3, batch=3, clock=clock, sync=clock.sync).batch == 3


def test_cpu_name_and_peak_rss_against_the_kernel():
    import platform
    import sys

    assert S.device_name("cpu").startswith("cpu: ") and platform.machine() in S.device_name("cpu")
    if not sys.platform.startswith("linux"):
        pytest.skip("VmHWM is Linux's")
    # the kernel's own count of the peak resident set, kB (/proc/self/status VmHWM), read around ours
    def vmhwm() -> float:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
        raise AssertionError("no VmHWM")

    lo, got, hi = vmhwm(), S.cpu_peak_rss_mb(), vmhwm()
    assert lo * 0.98 <= got <= hi * 1.02 and got > 10  # getrusage and /proc count pages a little differently


def test_peak_rss_units_worked_by_hand(monkeypatch):
    import resource
    import sys
    from types import SimpleNamespace

    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=3 * 1024 * 1024))
    monkeypatch.setattr(sys, "platform", "linux")
    assert S.cpu_peak_rss_mb() == 3072.0  # kB on Linux
    monkeypatch.setattr(sys, "platform", "darwin")
    assert S.cpu_peak_rss_mb() == 3.0  # bytes on macOS


def test_no_timed_iteration_is_named():
    with pytest.raises(ValueError, match=r"^no timed iterations$"):
        S.percentile_ms([], 50)
