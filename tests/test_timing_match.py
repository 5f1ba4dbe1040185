"""A speed record counts for a run only when it timed the same model: same weights, same method params.

Gates retrained after a timing (new ``weights_sha256``) or a config moved to another operating point
must not inherit the old timing in the tables, the trade-off or the claims ledger."""

from passbench.records import timing_applies
from passbench.report import tradeoff


def _run(sha="a", params=None, exp="tradeoff/pass_p_r40"):
    return {"kind": "run", "experiment": exp, "run_id": "r1", "created_utc": "2026-01-02T00:00:00Z",
            "task": "mot", "config": {"table": "tradeoff"}, "model": {"name": "m", "weights_sha256": sha},
            "method": {"name": "pass_p", "params": params if params is not None else {"rates": 0.4}},
            "metrics": {"mota": 0.5, "idf1": 0.6, "ids": 3}, "cost": {"patch_skip_rate": 0.4, "gmacs_executed": 1.0},
            "speed": {"fps": None, "fps_dense": None}}


def _speed(sha="a", params=None, exp="tradeoff/pass_p_r40"):
    return {"kind": "speed", "experiment": exp, "run_id": "s1", "created_utc": "2026-01-01T00:00:00Z", "task": "mot",
            "config": {"table": "tradeoff"}, "model": {"name": "m", "weights_sha256": sha},
            "method": {"name": "pass_p", "params": params if params is not None else {"rates": 0.4}},
            "speed": {"fps": 30.0, "fps_dense": 20.0}}


def test_timing_applies_to_the_same_weights_and_params_only():
    assert timing_applies(_speed(), _run())
    assert not timing_applies(_speed(sha="old"), _run())
    assert not timing_applies(_speed(params={"rates": 0.6}), _run())
    assert not timing_applies(None, _run())


def test_tradeoff_point_keeps_a_matching_timing_and_drops_a_stale_one():
    same = tradeoff.points([_run(), _speed()])
    assert same.loc[0, "fps_ratio"] == 1.5
    stale = tradeoff.points([_run(sha="new"), _speed(sha="old")])
    assert stale.loc[0, "fps_ratio"] is None or stale["fps_ratio"].isna().all()
