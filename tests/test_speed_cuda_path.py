"""The speed meter's CUDA path on a machine without a GPU: ``torch.cuda``'s calls replaced by a recorder that
behaves as the CUDA API documents (events need ``enable_timing=True`` to be timed; ``elapsed_time`` in ms;
``max_memory_allocated`` in bytes). The real device is exercised by the ``gpu``-marked tests in test_speed.py;
these pin the meter's side of the contract where CI has no GPU: which timer ``auto`` picks, what is
synchronised on which device, and how events and peak memory become the record's fields."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from passbench.metrics import speed as S  # noqa: E402


class FakeCuda:
    """Stands in for the parts of ``torch.cuda`` the meter calls; time moves only when the workload says."""

    def __init__(self) -> None:
        self.t = 0.0  # seconds
        self.log: list[tuple] = []

    def install(self, monkeypatch) -> None:
        fake = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                self.enable_timing, self.at = enable_timing, None

            def record(self) -> None:
                self.at = fake.t
                fake.log.append(("record",))

            def synchronize(self) -> None:
                fake.log.append(("event sync",))

            def elapsed_time(self, end: "Event") -> float:
                if not (self.enable_timing and end.enable_timing):  # as CUDA: "Both events must be created ..."
                    raise RuntimeError("Both events must be created with argument 'enable_timing=True'")
                return (end.at - self.at) * 1000.0

        class Device:
            def __init__(self, dev) -> None:
                fake.log.append(("device", dev))

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                return None

        monkeypatch.setattr(torch.cuda, "Event", Event)
        monkeypatch.setattr(torch.cuda, "device", Device)
        monkeypatch.setattr(torch.cuda, "synchronize", lambda dev=None: fake.log.append(("sync", dev)))
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda dev=None: fake.log.append(("reset", dev)))
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda dev=None: 3 * 2**20 + 2**19)  # bytes
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: f"Fake GPU {dev}")

    def workload(self, durations_ms):
        it = iter(durations_ms)

        def fn() -> None:
            self.log.append(("fn",))
            self.t += next(it) / 1000.0

        return fn


def test_auto_timer_is_events_on_cuda_unless_a_clock_or_sync_is_injected():
    for dev in ("cuda", "cuda:1", torch.device("cuda", 0)):
        assert S.SpeedMeter(device=dev).timer == "events", dev
    assert S.SpeedMeter(device="cuda", clock=lambda: 0.0).timer == "wall"
    assert S.SpeedMeter(device="cuda", sync=lambda: None).timer == "wall"
    assert S.SpeedMeter(device="cuda", timer="wall").timer == "wall"
    for dev in ("cpu", None, torch.device("cpu")):
        assert S.SpeedMeter(device=dev).timer == "wall", dev
    assert S.SpeedMeter().timed_region == "callable"  # the record's default region label


def test_default_sync_on_cuda_synchronises_the_meters_device(monkeypatch):
    fake = FakeCuda()
    fake.install(monkeypatch)
    S.SpeedMeter(device="cuda:1", timer="wall").sync()
    assert fake.log == [("sync", torch.device("cuda:1"))]
    fake.log.clear()
    S.SpeedMeter(device="cpu").sync()
    assert fake.log == []


def test_wall_timer_on_cuda_resets_then_reads_peak_memory_of_the_device(monkeypatch):
    fake = FakeCuda()
    fake.install(monkeypatch)
    fn = fake.workload([100.0, 4.0, 6.0, 5.0])
    r = S.measure(fn, warmup=1, iters=3, device="cuda:1", clock=lambda: fake.t, timer="wall")
    dev = torch.device("cuda:1")
    # warm-up, then the device synchronised and its peak statistics reset, then each timed call between syncs
    assert fake.log[:3] == [("fn",), ("sync", dev), ("reset", dev)]
    assert fake.log[3:] == [("sync", dev), ("fn",), ("sync", dev)] * 3
    assert list(r.latencies_ms) == pytest.approx([4.0, 6.0, 5.0]) and r.latency_ms_p50 == pytest.approx(5.0)
    assert r.peak_mem_mb == 3.5 and r.mem_kind == "cuda max_memory_allocated"  # 3.5 MiB in bytes / 2^20
    assert r.device == "cuda: Fake GPU cuda:1" and r.timed_region == "callable"


def test_event_timer_times_each_call_with_timing_events_on_the_device(monkeypatch):
    fake = FakeCuda()
    fake.install(monkeypatch)
    fn = fake.workload([50.0, 2.0, 8.0, 3.0, 7.0])
    r = S.measure(fn, warmup=1, iters=4, device="cuda:1", batch=2)  # auto: events
    dev = torch.device("cuda:1")
    assert ("device", dev) in fake.log and all(e[1] == dev for e in fake.log if e[0] in ("device", "reset"))
    assert list(r.latencies_ms) == pytest.approx([2.0, 8.0, 3.0, 7.0])
    assert r.latency_ms_p50 == pytest.approx(5.0) and r.fps == pytest.approx(2 * 1000.0 / 5.0) and r.batch == 2
    assert r.peak_mem_mb == 3.5 and r.device.startswith("cuda: ")
    # every timed call: sync before it, start recorded, the call, end recorded, end waited for
    body = fake.log[fake.log.index(("device", dev)) + 1:]
    assert body[:5] == [("sync", dev), ("record",), ("fn",), ("record",), ("event sync",)]
    assert body.count(("fn",)) == 4 and body.count(("event sync",)) == 4
