"""Seed error bars of the trade-off figure span the point itself: a point that borrows its gates' seed
deviations (claims.yaml ``noise``) may have every borrowed variant on one side of its value."""

from passbench.report.tradeoff_plot import seed_spreads


def _run(exp: str, mota: float, t: str = "2026-01-01T00:00:00Z") -> dict:
    return {"kind": "run", "experiment": exp, "run_id": exp, "created_utc": t, "task": "mot",
            "config": {"table": exp.split("/")[0]}, "method": {"name": "pass_p", "params": {}},
            "model": {"name": "m", "weights_sha256": "a"}, "metrics": {"mota": mota}, "cost": {}, "speed": {}}


def test_borrowed_seed_spread_contains_the_point():
    recs = [_run("table3/pass_p", 0.50), _run("seeds/table3/pass_p_s1", 0.52), _run("seeds/table3/pass_p_s2", 0.53),
            _run("tradeoff/pass_p_r40", 0.40)]
    spreads = seed_spreads(recs, ["table3/pass_p", "tradeoff/pass_p_r40"])  # the committed claims.yaml noise map
    for exp, value in (("table3/pass_p", 0.50), ("tradeoff/pass_p_r40", 0.40)):
        lo, hi = spreads[exp]
        assert lo <= value <= hi, (exp, spreads[exp])
    assert spreads["tradeoff/pass_p_r40"][1] > 0.40  # the seeds' deviations are there, not only the point


def test_every_committed_trade_off_point_lies_inside_its_seed_bar():
    # A borrowed variant is the point plus its source's seed deviation; rounding put the seed-0 variant of
    # tradeoff/skipconv_gumbel_r20 1e-16 above the point, and matplotlib refuses the negative error bar.
    from passbench.paths import REPO_ROOT
    from passbench.records import read_records
    from passbench.report import tradeoff

    recs = read_records(REPO_ROOT / "results" / "records")  # the committed ones, whatever PASSBENCH_RESULTS says
    df = tradeoff.points(recs)
    spreads = seed_spreads(recs, list(df["experiment"]), claims=REPO_ROOT / "results" / "claims.yaml")
    assert spreads, "no seed spread in the committed records (scripts/measure_noise.sh seeds)"
    for _, r in df.iterrows():
        if r["experiment"] in spreads:
            lo, hi = spreads[r["experiment"]]
            assert lo <= r["mota"] <= hi, (r["experiment"], r["mota"], lo, hi)
