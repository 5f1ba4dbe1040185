"""The matched-rate trade-off report (table + figure) from fixture records (never results)."""

import pandas as pd

from passbench import records as R
from passbench.report import tradeoff
from test_records import fixture_run


def _rec(stem, skip, mota, gmacs, gate=0.0, fps=(10.0, 8.0)):
    r = fixture_run(f"tradeoff/{stem}", metrics={"mota": mota, "idf1": 0.6, "idp": 0.7, "ids": 4},
                    cost={"gmacs_dense": 1.0, "gmacs_executed": gmacs, "gate_gmacs": gate, "patch_skip_rate": skip,
                          "mac_reduction": 0.0})
    r["config"]["table"] = "tradeoff"
    r["speed"]["fps"], r["speed"]["fps_dense"] = fps
    return r


def test_points_table_and_figure(tmp_path):
    recs = [_rec("dense", 0.0, 0.50, 1.0), _rec("pass_f_r40", 0.38, 0.49, 0.8, gate=0.05),
            _rec("pass_f_r20", 0.19, 0.50, 0.9, gate=0.05), _rec("random_r40", 0.40, 0.30, 0.8),
            fixture_run("table3/pass_p")]  # another table: ignored
    df = tradeoff.points(recs)
    assert list(df["experiment"]) == ["tradeoff/dense", "tradeoff/pass_f_r20", "tradeoff/pass_f_r40",
                                      "tradeoff/random_r40"]
    row = df[df["experiment"] == "tradeoff/pass_f_r40"].iloc[0]
    assert row["method"] == "pass_f" and row["target"] == 0.4 and abs(row["gmacs"] - 0.85) < 1e-12  # gate MACs added
    assert row["fps_ratio"] == 10.0 / 8.0
    md = tradeoff.render(df)
    assert "PASS-F" in md and "| 40 " in md and "38.0" in md and "1.25x" in md
    for r in recs:
        R.append_record(tmp_path / "records" / "x.jsonl", r)
    paths = tradeoff.write(tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert len(pd.read_csv(tmp_path / "tables" / "tradeoff.csv")) == 4


def test_a_rerun_replaces_its_point():
    a, b = _rec("random_r40", 0.40, 0.30, 0.8), _rec("random_r40", 0.41, 0.31, 0.8)
    b["created_utc"] = "2099-01-01T00:00:00Z"
    df = tradeoff.points([a, b])
    assert len(df) == 1 and df["mota"].iloc[0] == 0.31
    assert "no trade-off records" in tradeoff.render(tradeoff.points([]))


def test_refresh_table_sets_each_method_beside_itself(tmp_path):
    no = _rec("pass_p_r40", 0.39, 0.40, 0.8)
    yes = _rec("pass_p_r40", 0.30, 0.50, 0.85)
    yes["experiment"] = "refresh/pass_p_r40"
    yes["config"]["table"] = "refresh"
    yes["method"]["params"] = {"refresh_every": 4}
    for r in (no, yes, _rec("random_r60", 0.6, 0.2, 0.7)):
        R.append_record(tmp_path / "records" / "x.jsonl", r)
    paths = tradeoff.write(tmp_path)
    assert tmp_path / "tables" / "refresh.md" in paths
    md = (tmp_path / "tables" / "refresh.md").read_text().split("\n\n")[0]  # the table (then the claims' links)
    assert "| PASS-P   | no refresh" in md and "| PASS-P   | refresh every 4" in md and "random" not in md


def test_variant_names_parse_and_label():
    a = _rec("pass_f_r40_computed", 0.4, 0.45, 0.8)
    a["experiment"], a["config"]["table"] = "refresh/pass_f_r40_computed", "refresh"
    a["method"]["params"] = {"reference": "computed", "refresh_every": None}
    b = _rec("skipconv_norm_r40", 0.4, 0.5, 0.8)
    b["experiment"], b["config"]["table"] = "refresh/skipconv_norm_r40", "refresh"
    b["method"]["params"] = {"refresh_every": 4}
    df = tradeoff.points([a, b], table="refresh")
    assert list(df["method"]) == ["pass_f", "skipconv_norm"] and list(df["target"]) == [0.4, 0.4]
    both = tradeoff.refresh_frame(tradeoff.points([]), df)
    assert sorted(both["variant"]) == ["no refresh, computed reference", "refresh every 4"]
    c = _rec("rate0_r40", 0.4, 0.5, 0.8)  # digits in the method stem (the rate-term ablation)
    c["experiment"], c["config"]["table"] = "ablation/rate0_r40", "ablation"
    assert list(tradeoff.points([c], table="ablation")["method"]) == ["rate0"]


def test_ablation_and_uniform_series(tmp_path):
    ab = _rec("gate_paper_r40", 0.40, 0.20, 0.9, gate=0.3)
    ab["experiment"], ab["config"]["table"] = "ablation/gate_paper_r40", "ablation"
    uni = _rec("pass_f_uniform_r40", 0.39, 0.47, 0.8, gate=0.04)
    for r in (ab, uni, _rec("pass_f_r40", 0.41, 0.35, 0.8, gate=0.04)):
        R.append_record(tmp_path / "records" / "x.jsonl", r)
    df = tradeoff.points([uni])
    assert df["method"].iloc[0] == "pass_f_uniform" and df["target"].iloc[0] == 0.4
    paths = tradeoff.write(tmp_path)
    assert tmp_path / "tables" / "ablation.md" in paths
    md = (tmp_path / "tables" / "ablation.md").read_text()
    assert "authors' gate sizes" in md and "0.300" in md  # the gate's GMACs in their own column
    assert "PASS-F, uniform rates" in (tmp_path / "tables" / "tradeoff.md").read_text()


def test_untimed_point_takes_its_speed_record():
    run = _rec("keyframe_r40", 0.40, 0.45, 0.7, fps=(None, None))
    sp = {"kind": "speed", "experiment": "tradeoff/keyframe_r40", "created_utc": "2099-01-01T00:00:00Z",
          "config": {"table": "tradeoff"}, "speed": {"fps": 12.0, "fps_dense": 10.0}}
    df = tradeoff.points([run, sp])
    assert df["fps_ratio"].iloc[0] == 1.2
    assert tradeoff.points([run])["fps_ratio"].isna().all()


def test_figure_spends_its_axis_where_methods_differ():
    """Panels per family; the y-range starts 20 points under dense; a collapsed point sits at the edge with its
    value; a point with seed twins gets an error bar over its seeds; legends lie below the panels."""
    from passbench.report import tradeoff_plot

    recs = [_rec("dense", 0.0, 0.50, 1.0), _rec("pass_f_r40", 0.38, 0.45, 0.8, gate=0.05),
            _rec("pass_f_r60", 0.58, -0.35, 0.7, gate=0.05), _rec("skipconv_norm_r40", 0.33, 0.52, 0.9),
            _rec("keyframe_r40", 0.40, 0.48, 0.8)]
    twin = fixture_run("seeds/tradeoff/pass_f_r40_s1", metrics={"mota": 0.41})  # seed 1 of the PASS-F point
    fig = tradeoff_plot.figure(tradeoff.points(recs), records=recs + [twin])
    top = fig.axes[:3]
    assert [ax.get_title() for ax in top] == ["PASS", "Skip-Conv", "floors (keyframe, random)"]
    assert top[0].get_ylim()[0] == 30.0  # dense 50 - 20 points, not -35
    notes = [t.get_text() for t in top[0].texts]
    assert "-35.0" in notes  # the collapsed PASS-F point, labelled at the edge
    bars = [c for c in top[0].containers if c.__class__.__name__ == "ErrorbarContainer"]
    assert len(bars) == 1  # PASS-F at 40 %: seeds 0.45 and 0.41
    seg = bars[0].lines[2][0].get_segments()[0]
    assert sorted(float(p[1]) for p in seg) == [41.0, 45.0]
    fig.canvas.draw()
    for ax in fig.axes[3:]:
        leg = ax.get_legend()
        assert leg is not None and leg.get_window_extent().y1 <= ax.get_window_extent().y0  # below, outside
    import matplotlib.pyplot as plt

    plt.close(fig)


def _ev(stem, skip, mota, sha="w"):
    r = _rec(stem, skip, mota, 0.8, gate=0.1, fps=(None, None))
    r["experiment"], r["config"]["table"] = f"everyconv/{stem}", "everyconv"
    r["model"]["weights_sha256"] = sha
    return r


def _ev_speed(stem, threads, fps, dense, sha="w", when="2099-01-01T00:00:00Z"):
    return {"kind": "speed", "experiment": f"everyconv/{stem}", "created_utc": when, "task": "mot",
            "config": {"table": "everyconv", "speed": {"threads": threads}}, "model": {"weights_sha256": sha},
            "method": {"name": "pass_p", "params": {}}, "speed": {"fps": fps, "fps_dense": dense, "threads": threads}}


def test_everyconv_table_has_one_fps_column_per_thread_count(tmp_path):
    """The every-conv table: its own records only, one FPS / dense column per thread count (the newest matching
    timing of each), a timing of other weights left out; the light model's tables keep one FPS column."""
    recs = [_ev("dense", 0.0, 0.48), _ev("pass_p_r40", 0.39, 0.46),
            _ev_speed("pass_p_r40", 1, 12.0, 10.0), _ev_speed("pass_p_r40", 2, 15.0, 10.0),
            _ev_speed("pass_p_r40", 2, 99.0, 10.0, when="2098-01-01T00:00:00Z"),  # older: replaced by the 1.5x
            _ev_speed("pass_p_r40", 1, 30.0, 10.0, sha="old", when="2100-01-01T00:00:00Z"),  # other weights
            _rec("dense", 0.0, 0.516, 1.0)]
    df = tradeoff.points(recs, table="everyconv")
    assert list(df["experiment"]) == ["everyconv/dense", "everyconv/pass_p_r40"]
    assert df["fps_ratio_threads"].iloc[1] == {2: 1.5}  # the 1-thread timing is of other weights: the newest applies
    recs[-2]["created_utc"] = "2000-01-01T00:00:00Z"  # now older than the matching 1-thread timing
    df = tradeoff.points(recs, table="everyconv")
    assert df["fps_ratio_threads"].iloc[1] == {1: 1.2, 2: 1.5}
    md = tradeoff.render(df, by_threads=True)
    head = md.splitlines()[0]
    assert "FPS / dense, 1 thread " in head and "FPS / dense, 2 threads" in head and "| FPS / dense |" not in head
    row = [ln for ln in md.splitlines() if ln.startswith("| PASS-P")][0]
    assert [c.strip() for c in row.strip("| ").split("|")][-2:] == ["1.20x", "1.50x"]
    assert "1:1.2000;2:1.5000" in tradeoff.render(df, "csv", by_threads=True)
    assert "fps_ratio_threads" not in tradeoff.render(tradeoff.points(recs), "csv")  # the light model's csv as before
    for r in recs:
        if r["kind"] == "run":  # the hand-made speed dicts above are not schema records
            R.append_record(tmp_path / "records" / "x.jsonl", r)
    paths = tradeoff.write(tmp_path, table="everyconv")
    assert {p.name for p in paths} >= {"everyconv.md", "everyconv.csv", "tradeoff.md", "everyconv.png", "everyconv.pdf"}
    assert "tradeoff.png" not in {p.name for p in paths}


def test_everyconv_figure_draws_the_light_models_dense_line():
    from passbench.report import tradeoff_plot

    df = tradeoff.points([_ev("dense", 0.0, 0.48), _ev("pass_p_r40", 0.39, 0.46)], table="everyconv")
    fig = tradeoff_plot.figure(df, source="configs/everyconv/", reference=("light model's dense", 0.516))
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "dense (48.0)" in labels and "light model's dense (51.6)" in labels
    assert "configs/everyconv/" in fig._suptitle.get_text()


def test_clipped_labels_stack_only_where_they_would_overprint():
    """Labels of points clipped at the panel's edge rise a row per label already near the same x, and
    a label far from the others stays on the first row however many methods came before it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from passbench.report.tradeoff_plot import _series
    fig, ax = plt.subplots()
    low = 30.0
    for i in range(12):  # twelve methods, each collapsing near 78 % skip, as on the every-conv model
        _series(ax, pd.Series([20.0, 40.0, 77.0 + 0.2 * i]), pd.Series([50.0, 48.0, -30.0 - i]), low,
                [None] * 3, f"m{i}", "C0")
    _series(ax, pd.Series([20.0, 30.0]), pd.Series([50.0, 10.0]), low, [None] * 2, "far", "C1")
    offsets = {a.get_text(): a.xyann[1] for a in ax.texts}
    stacked = sorted(offsets[f"{-30.0 - i:.1f}"] for i in range(12))
    assert stacked == [7 + 8 * k for k in range(12)]  # one row each, none overprinting
    assert offsets["10.0"] == 7  # alone at its x: the first row
    plt.close(fig)


def test_the_figure_draws_a_panel_per_family_with_points_and_the_variants_beside_pass_p():
    from passbench.report import tradeoff_plot
    light = tradeoff.points([_rec("dense", 0.0, 0.5, 1.0), _rec("pass_p_r40", 0.4, 0.49, 0.8),
                             _rec("random_r40", 0.4, 0.3, 0.8)])
    fig = tradeoff_plot.figure(light)
    assert [a.get_title() for a in fig.axes[:2]] == ["PASS", "floors (keyframe, random)"]  # no empty panels
    ev = tradeoff.points([_ev("dense", 0.0, 0.48), _ev("pass_p_r40", 0.39, 0.46), _ev("pass_p_trim_r40", 0.2, 0.47)],
                         table="everyconv")
    fig = tradeoff_plot.figure(ev, source="configs/everyconv/")
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles == ["PASS", "PASS-P gate-cost variants (passbench's)"]
    variants = fig.axes[len(titles) + 1]  # second row, second panel
    labels = variants.get_legend_handles_labels()[1]
    assert "PASS-P" in labels and "PASS-P, gates only where the engine skips (variant)" in labels
