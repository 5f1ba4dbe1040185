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
