"""``scripts/measure_noise.sh``: the seed configs evaluate exactly as Table 3's accuracy runs; the timing job
writes speed records with every round's ratio; the seed job, on a tiny slice, retrains the gates with the seed
through scripts/train_sample.sh unchanged and writes the seed records the claims ledger reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from passbench import records as R
from passbench.config import CONFIGS, load_config, normalized, to_dict
from passbench.paths import REPO_ROOT, RESULTS
from passbench.records import latest_by_experiment

SCRIPT = REPO_ROOT / "scripts" / "measure_noise.sh"
ROWS = ("pass_p", "pass_f", "skipconv_gumbel")
# a tiny slice: two training steps on the synthetic store, four frames of TUD-Campus labelled smoke
TRAIN_TINY = "steps=2 batch_size=2 sequences=[synthetic] calib_pairs=2 threads=1"
EVAL_TINY = ("dataset.sequences=[TUD-Campus] dataset.halves={} dataset.frames=[1,4] dataset.protocol=smoke "
             "method.params.execution=sparse")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "params" else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("row", ROWS)
@pytest.mark.parametrize("seed", (1, 2))
def test_seed_configs_are_table3_accuracy_runs_but_the_seed(row, seed):
    """Against the committed table3/<row> record's own config: only the name, table, paper row, the weights
    file and the seed differ (and speed.rounds, which that record predates)."""
    cfg = to_dict(load_config(CONFIGS / "seeds" / "table3" / f"{row}_s{seed}.yaml"))
    runs = latest_by_experiment(R.read_records(RESULTS / "records" / "table3.jsonl"))
    base = normalized(runs[f"table3/{row}"]["config"])  # re-resolved: keys added since default as then
    mine, theirs = _flat(cfg), _flat(base)
    differ = {k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)}
    assert differ <= {"name", "table", "paper_row", "model.weights", "train.seed", "speed.rounds"}, differ
    assert cfg["name"] == f"seeds/table3/{row}_s{seed}" and cfg["train"]["seed"] == seed
    assert cfg["model"]["weights"] == f"runs/seeds/s{seed}/weights/sample/{row}.pt"


def _script(args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    e = {**os.environ, "PY": sys.executable, "PASSBENCH_RESULTS": str(tmp_path / "results"),
         "NOISE_RUNS": str(tmp_path / "runs"), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO_ROOT, env=e, capture_output=True, text=True,
                          timeout=1800)


def test_bad_use_is_refused(tmp_path):
    for args, needle in ((["seeds", "0"], "0 is the committed chain"), (["seeds", "7"], "configs/seeds/table3/pass_p_s7"),
                         (["timing", "1"], "rounds must be an integer >= 2"), (["what"], "usage")):
        res = _script(args, tmp_path)
        assert res.returncode == 2 and needle in res.stderr, (args, res.stderr)
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def _sample_data() -> None:
    from passbench.paths import SAMPLE_DATA

    if not (SAMPLE_DATA / "MOT15" / "train" / "TUD-Campus").is_dir():
        pytest.skip("sample data not present")


def test_timing_job_keeps_every_round(tmp_path):
    _sample_data()
    res = _script(["timing", "5", "configs/table3/random_skip.yaml"], tmp_path,
                  NOISE_EVAL_EXTRA="speed.warmup=1 speed.iters=5")
    assert res.returncode == 0, res.stderr[-2000:]
    (rec,) = R.read_records(tmp_path / "results" / "records")
    sp = rec["speed"]
    assert rec["kind"] == "speed" and rec["experiment"] == "table3/random_skip" and sp["threads"] == 1
    assert sp["rounds"] == 5 and len(sp["speedup_rounds"]) == 5 and "loaded" in sp
    assert "5 rounds" in res.stdout


@pytest.mark.slow
def test_seed_job_on_a_tiny_slice(tmp_path):
    """~2-3 min on 2 shared cores: PASS-P, PASS-F and Skip-Conv Gumbel, 2 steps each with seed 1."""
    _sample_data()
    weights = {p: p.read_bytes() for p in (REPO_ROOT / "weights" / "sample").iterdir() if p.is_file()}
    res = _script(["seeds", "1"], tmp_path, NOISE_TRAIN_EXTRA=TRAIN_TINY, NOISE_EVAL_EXTRA=EVAL_TINY)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for stage in ROWS:  # every stage trained with the seed, by train_sample.sh's own recipe
        cfg = json.loads((tmp_path / "runs" / "s1" / "runs" / stage / "config.json").read_text())
        assert cfg["seed"] == 1 and cfg["steps"] == 2
    assert json.loads((tmp_path / "runs" / "s1" / "runs" / "pass_f" / "config.json").read_text())["init"] == "runs/pass_p/final.pt"
    recs = R.read_records(tmp_path / "results" / "records" / "seeds.jsonl")
    assert sorted(r["experiment"] for r in recs) == [f"seeds/table3/{row}_s1" for row in sorted(ROWS)]
    assert all(r["config"]["train"]["seed"] == 1 for r in recs)
    committed = {r["experiment"]: r["model"]["weights_sha256"] for r in latest_by_experiment(
        R.read_records(RESULTS / "records" / "table3.jsonl")).values() if r["kind"] == "run"}
    assert all(r["model"]["weights_sha256"] != committed[r["experiment"].replace("seeds/", "")[:-3]] for r in recs)
    assert {p: p.read_bytes() for p in weights} == weights  # published into the run folder, never weights/sample
