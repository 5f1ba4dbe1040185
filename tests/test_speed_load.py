"""Machine load and timing rounds in speed records: the load around a timing is stored and a timing taken
under a load above the cores is flagged in the record and in the summary lines; each alternating round's
ratio is kept (its spread is the timing noise the claims ledger reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from passbench import records as R
from passbench.metrics import load as L
from test_records import fixture_run


def test_load_fields_flag_a_load_above_the_cores():
    assert L.load_fields(1.5, 1.9, cores=2) == {"load_1m_before": 1.5, "load_1m_after": 1.9, "cpu_cores": 2,
                                                "loaded": False}
    assert L.load_fields(1.0, 2.5, cores=2)["loaded"] is True  # the load rose above the cores during the timing
    assert L.load_fields(3.0, None, cores=2)["loaded"] is True
    assert L.load_fields(None, None, cores=2)["loaded"] is None  # no load average on this OS: unknown, not "quiet"
    assert L.cpu_cores() >= 1


def test_load_warning_names_the_load_and_the_cores():
    sp = L.load_fields(5.74, 3.2, cores=2)
    assert L.load_warning(sp).startswith("WARNING: timed under load 5.7 > 2 cores")
    assert L.load_warning(L.load_fields(0.4, 0.6, cores=2)) is None
    assert L.load_warning({"fps": 10.0}) is None  # a record from before the load was recorded: nothing known


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
    assert "5 rounds" in out and "WARNING: timed under load 8.0 > 2 cores" in out
    sp = R.read_records(tmp_path / "records")[0]["speed"]
    assert sp["rounds"] == 5 and sp["speedup_rounds"] == pytest.approx([2.0, 1.25, 1.0, 0.5, 1.0])
    assert sp["speedup_spread"] == pytest.approx(1.5)
    assert sp["speedup"] == pytest.approx(1.0)  # pooled medians: 10 ms against 10 ms
    assert (sp["load_1m_before"], sp["load_1m_after"], sp["cpu_cores"], sp["loaded"]) == (7.5, 8.0, 2, True)
