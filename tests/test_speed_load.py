"""Machine load and timing rounds in speed records: the load around a timing is stored and a timing taken
under a load above the cores is flagged in the record and in the summary lines; each alternating round's
ratio is kept (its spread is the timing noise the claims ledger reads)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from passbench import records as R
from passbench.metrics import load as L
from test_records import fixture_run


def test_load_fields_flag_a_load_above_the_cores():
    assert L.load_fields(1.5, 1.9, cores=2) == {"others_cpu_cores": None, "load_1m_before": 1.5,
                                                "load_1m_after": 1.9, "cpu_cores": 2, "loaded": False}
    assert L.load_fields(1.0, 2.5, cores=2)["loaded"] is True  # the load rose above the cores during the timing
    assert L.load_fields(3.0, None, cores=2)["loaded"] is True
    assert L.load_fields(None, None, cores=2)["loaded"] is None  # no load average on this OS: unknown, not "quiet"
    assert L.cpu_cores() >= 1


def test_loaded_means_other_processes_took_the_cores_the_timing_needed():
    # 2 cores, a 2-thread timing: the load average reads 2.6 from the timing's own threads (the old rule
    # flagged it), but other processes used 0.1 core: not loaded. 0.4 core is: the timing left none free.
    quiet = L.load_fields(0.4, 2.6, cores=2, others=0.1, threads=2)
    assert quiet["loaded"] is False and quiet["others_cpu_cores"] == 0.1
    assert L.load_fields(0.4, 2.6, cores=2, others=0.4, threads=2)["loaded"] is True
    # a 1-thread timing leaves one core free: another job on it is within the margin, two jobs are not
    assert L.load_fields(3.0, 3.0, cores=2, others=1.0, threads=1)["loaded"] is False
    assert L.load_fields(1.0, 1.0, cores=2, others=1.0 + L.IDLE_NOISE + 0.01, threads=1)["loaded"] is True
    assert L.load_fields(0.1, 0.1, cores=2, others=L.IDLE_NOISE, threads=2)["loaded"] is False
    # threads beyond the cores: no core free, any other use above the noise is load
    assert L.load_fields(0.1, 0.1, cores=2, others=0.3, threads=4)["loaded"] is True
    # others unknown (no /proc/stat): the load-average rule
    assert L.load_fields(3.0, 3.0, cores=2, others=None, threads=1)["loaded"] is True


def test_others_cores_is_the_machines_busy_time_minus_this_process_over_the_wall_time(tmp_path):
    # worked by hand: 10 s wall, the machine busy 25 s more, this process 5 s of it: 2 cores on average
    assert L.others_cores((100.0, 1000.0, 3.0), (110.0, 1025.0, 8.0)) == pytest.approx(2.0)
    assert L.others_cores((100.0, 1000.0, 3.0), (110.0, 1004.0, 8.0)) == 0.0  # tick rounding: never negative
    assert L.others_cores(None, (110.0, 1025.0, 8.0)) is None
    assert L.others_cores((100.0, 1.0, 1.0), (100.0, 2.0, 1.0)) is None  # no wall time passed
    # /proc/stat's aggregate line: busy = every state but idle (4th) and iowait (5th), in clock ticks
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 20 30 5000 400 6 7 8 90 0\ncpu0 50 10 15 2500 200 3 3 4 45 0\n")
    wall, busy, own = L.cpu_sample(str(stat))
    assert busy == pytest.approx((100 + 20 + 30 + 6 + 7 + 8) / os.sysconf("SC_CLK_TCK"))
    assert L.cpu_sample(str(tmp_path / "missing")) is None
    stat.write_text("intr 1 2 3\n")
    assert L.cpu_sample(str(stat)) is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="no /proc/stat on this OS")
def test_others_cores_sees_another_process_and_not_this_one():
    # A busy child process for ~1.5 s is seen as (about) one more core; this process's own spinning is not
    # counted (whatever else the machine runs adds to both readings alike).
    def spin(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    a = L.cpu_sample()
    spin(1.0)
    b = L.cpu_sample()
    own_only = L.others_cores(a, b)
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 1.5\n"
                              "while time.monotonic() < end: pass"])
    a = L.cpu_sample()
    time.sleep(1.5)
    b = L.cpu_sample()
    child.wait()
    with_child = L.others_cores(a, b)
    assert with_child >= own_only + 0.6, (own_only, with_child)


def test_load_warning_names_the_load_and_the_cores():
    sp = L.load_fields(5.74, 3.2, cores=2)
    assert L.load_warning(sp).startswith("WARNING: timed under load 5.7 > 2 cores")
    assert L.load_warning(L.load_fields(0.4, 0.6, cores=2)) is None
    assert L.load_warning({"fps": 10.0}) is None  # a record from before the load was recorded: nothing known
    sp = {**L.load_fields(0.5, 3.1, cores=2, others=1.3, threads=1), "threads": 1}
    assert L.load_warning(sp).startswith("WARNING: timed under load: other processes kept 1.3 of 2 cores busy "
                                         "beside the timing's 1 thread(s)")


def test_summary_line_warns_for_a_loaded_timing_only():
    rec = fixture_run("table3/pass_p")
    quiet = R.summary_line(rec)
    assert "WARNING" not in quiet and "(1.25x dense)" in quiet
    rec["speed"].update(L.load_fields(4.2, 4.0, cores=2))
    line = R.summary_line(rec)
    assert line.startswith(quiet) and "WARNING: timed under load 4.2 > 2 cores" in line
    rec["speed"].update(fps=None, fps_dense=None)  # untimed: no timing to warn about
    assert "WARNING" not in R.summary_line(rec)


def test_passbench_speed_records_rounds_and_load(tmp_path: Path, capsys, monkeypatch):
    from passbench import cli
    from passbench.paths import resolve_data_root

    try:
        root = resolve_data_root(None)
    except FileNotFoundError:
        pytest.skip("sample data not present")
    if not (root / "MOT15" / "train" / "TUD-Stadtmitte").is_dir():
        pytest.skip("sample data not present")
    readings = iter([7.5, 8.0])  # before, after: a machine busier than any core count here
    monkeypatch.setattr(L, "load_1m", lambda: next(readings))
    # other processes' CPU: 2 cores busy over 10 s beside this one's 5 s (worked out in the test above)
    samples = iter([(100.0, 1000.0, 3.0), (110.0, 1025.0, 8.0)])
    monkeypatch.setattr(L, "cpu_sample", lambda: next(samples))
    monkeypatch.setattr(L, "cpu_cores", lambda: 2)
    # the timer, by hand: dense rounds at 10 ms, the skipping model's rounds at 5, 8, 10, 20, 10 ms
    from passbench.metrics import speed as S

    lat = iter([10.0, 5.0, 10.0, 8.0, 10.0, 10.0, 10.0, 20.0, 10.0, 10.0])  # dense, skip, dense, skip, ...

    def fake_measure(fn, *, warmup, iters, device, precision, timed_region, **_):
        fn()  # the model really runs once per round
        ms = next(lat)
        return S.SpeedResult(fps=1000.0 / ms, latency_ms_p50=ms, latency_ms_p90=ms, device="cpu: fixture",
                             threads=1, precision="fp32", batch=1, timed_region=timed_region, peak_mem_mb=None,
                             latencies_ms=(ms,) * iters)

    monkeypatch.setattr(S, "measure", fake_measure)
    rc = cli.main(["--results-dir", str(tmp_path), "speed", "configs/table3/random_skip.yaml", "speed.warmup=1",
                   "speed.iters=5", "speed.rounds=5", "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "5 rounds" in out and "WARNING: timed under load: other processes kept 2.0 of 2 cores busy" in out
    sp = R.read_records(tmp_path / "records")[0]["speed"]
    assert sp["rounds"] == 5 and sp["speedup_rounds"] == pytest.approx([2.0, 1.25, 1.0, 0.5, 1.0])
    assert sp["speedup_spread"] == pytest.approx(1.5)
    assert sp["speedup"] == pytest.approx(1.0)  # pooled medians: 10 ms against 10 ms
    assert (sp["load_1m_before"], sp["load_1m_after"], sp["cpu_cores"], sp["loaded"]) == (7.5, 8.0, 2, True)
    assert sp["others_cpu_cores"] == 2.0 and sp["threads"] == 1
