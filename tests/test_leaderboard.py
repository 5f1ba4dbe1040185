"""``passbench leaderboard``: the training recipe and row templates (against Table 3's configs), the
budget planner, an end-to-end smoke run (4 records, then a re-run that resumes instead of retraining),
the CLI, and the report helpers (board, Pareto front, summary line, plots)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from passbench import leaderboard as lb
from passbench.config import CONFIGS, load_config
from passbench.paths import REPO_ROOT
from passbench.records import append_record, read_records
from passbench.report.leaderboard import board, pareto_front, plot_board, summary_line
from test_records import fixture_run

TINY = "timm:mobilenetv3_small_050"  # 0.5 M params, 0.16 GMACs at 192x128
# Smoke settings: train on the synthetic store, evaluate 4 frames of TUD-Campus, labelled "smoke". The
# gated layers run the sparse kernel whatever the dispatcher's timing calibration says on a busy machine,
# so that executed MACs do not depend on the load (with the layers kept dense, the gate cost charged
# makes Eq. 3's R_m negative on this tiny model, which records.py refuses as a fraction outside [0, 1]).
SMOKE_TRAIN = {"sequences": ["synthetic"], "calib_pairs": 2, "input_wh": [192, 128], "batch_size": 2}
SMOKE_EVAL = ["dataset.sequences=[TUD-Campus]", "dataset.halves={}", "dataset.frames=[1,4]", "dataset.protocol=smoke",
              "speed.iters=3", "speed.warmup=1", "method.params.execution=sparse"]


# ----------------------------------------------------------------------------------------------
# recipe and templates


def _sample_chain() -> dict[str, dict]:
    """``scripts/train_sample.sh`` (the chain behind Table 3's weights): ``key=value`` settings per stage."""
    import re
    import shlex

    import yaml

    sh = (REPO_ROOT / "scripts" / "train_sample.sh").read_text()
    layers = re.search(r'^LAYERS="(.*)"$', sh, re.M).group(1)
    common = dict(t.split("=", 1) for t in shlex.split(re.search(r"^COMMON=\((.*)\)$", sh, re.M).group(1)))
    out = {}
    for stage, body in re.findall(r"^\s+(\w+)\)(.*?);;", sh, re.M | re.S):
        toks = [t for t in shlex.split(body.replace("\\\n", " ").replace("$LAYERS", layers), comments=True) if "=" in t]
        kv = {**common, **dict(t.split("=", 1) for t in toks if not t.startswith(("base=", "half=")))}
        out[stage] = {k: _value(yaml.safe_load(v)) for k, v in kv.items()}
    return out


def _value(v):
    try:  # YAML 1.1 reads 4e-4 (no dot) as a string; passbench.train takes it as a float
        return float(v) if isinstance(v, str) else v
    except ValueError:
        return v


def test_recipe_loads_and_mirrors_the_sample_chain():
    """configs/leaderboard/_base_/train.yaml == scripts/train_sample.sh on every setting but the step
    counts (budgeted), init paths and logging: a new backbone is trained like the light model."""
    r = lb.load_recipe()
    assert set(r["stages"]) == set(lb.STAGES)
    assert sum(r["stages"][s]["share"] for s in lb.STAGES) == pytest.approx(1.0)
    chain = _sample_chain()
    for stage in lb.STAGES:
        want = {k: v for k, v in chain[stage].items() if k not in ("steps", "init", "log_every", "ckpt_every")}
        have = {**r["common"], **r["stages"][stage]}
        layers = want.get("skip_params", {}).pop("layers", None)
        assert layers in (None, list(lb.DEFAULT_LAYERS)), (stage, layers)
        assert {k: have.get(k) for k in want} == want, stage
    cfg = lb.stage_cfg(r, "pass_p", TINY, Path("/x"), layers=lb.DEFAULT_LAYERS, data_root=None, steps=7, overrides={})
    assert cfg.model == TINY and cfg.steps == 7 and cfg.init == "/x/task/final.pt" and cfg.pretrained is None
    assert cfg.skip_params["layers"] == list(lb.DEFAULT_LAYERS) and cfg.rate_weight == 1.0
    assert lb.stage_cfg(r, "pass_f", TINY, Path("/x"), layers=lb.DEFAULT_LAYERS, data_root=None, steps=1,
                        overrides={}).init == "/x/pass_p/final.pt"


@pytest.mark.parametrize("bad, match", [
    ({"stages": {"task": {"share": 0.5, "no_such_key": 1}}}, "unknown training key 'no_such_key'"),
    ({"stages": {"task": {"share": 2}}}, r"stages.task.share must be a number in \[0, 1\]"),
    ({"stages": {"task": {"share": 0.5, "lr": "fast"}}}, "key 'lr'"),
    ({"extra": 1}, "expected keys probe_steps"),
])
def test_recipe_errors_name_the_file_and_key(tmp_path, bad, match):
    import yaml

    data = yaml.safe_load(lb.RECIPE.read_text())
    for k, v in bad.items():
        if k == "stages":
            data["stages"].update(v)
        else:
            data[k] = v
    p = tmp_path / "train.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(lb.LeaderboardError, match=match) as e:
        lb.load_recipe(p)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("method", lb.METHODS)
def test_rows_use_table3_protocol(method):
    """Every leaderboard row is Table 3's row of the same method with only the model swapped."""
    w = REPO_ROOT / "runs" / "leaderboard" / "x" / "task" / "final.pt"
    cfg = lb.row_config(method, "timm:resnet18", w, (384, 224))
    t3 = load_config(CONFIGS / "table3" / ("dense_light.yaml" if method == "dense" else f"{method}.yaml"))
    assert cfg.name == f"leaderboard/timm:resnet18/{method}" and cfg.table == "leaderboard"
    assert cfg.model.name == "timm:resnet18" and cfg.model.weights == "runs/leaderboard/x/task/final.pt"
    assert (cfg.dataset, cfg.eval, cfg.speed, cfg.method) == (t3.dataset, t3.eval, t3.speed, t3.method)
    assert cfg.max_cpu_gmacs == load_config(CONFIGS / "table3" / "hrnet_w32.yaml").max_cpu_gmacs == 10.0
    assert cfg.model.input_wh == t3.model.input_wh and cfg.model.fold_bn == t3.model.fold_bn
    assert cfg.model.channels_last == t3.model.channels_last


def test_template_alone_measures_nothing():
    from passbench.models import build_model

    cfg = load_config(CONFIGS / "leaderboard" / "dense.yaml")
    assert cfg.model.name == "" and cfg.model.weights is None
    with pytest.raises(KeyError):
        build_model(cfg.model.name)


@pytest.mark.parametrize("name", ["timm:resnet18", "timm:efficientnet_b0", "timm:regnetx_002", "fairmot_mbv2"])
def test_default_layers_gate_neck_and_heads(name):
    """The default gated layers exist in every family: 4 projections + 3 fusion nodes + 5 head convs."""
    from passbench.models import build_model
    from passbench.skip import make_skippable, skippable_layers

    m = make_skippable(build_model(name), "dense", layers=list(lb.DEFAULT_LAYERS))
    names = [n for n, _ in skippable_layers(m)]
    assert len(names) == 12 and all(n.startswith(("neck.", "hm.", "wh.", "reg.", "id.")) for n in names), names


def test_training_builds_timm_names():
    # passbench.train's build_net reads "pkg.module:function" as a factory (test stand-ins) but hands
    # "timm:<arch>" to passbench.models.build_model
    from passbench.models.timm_fairmot import TimmFairMOT
    from passbench.train.build import build_net
    from passbench.train.tiny import TinyFairMOT

    assert isinstance(build_net(TINY, pretrained=False), TimmFairMOT)
    assert isinstance(build_net("passbench.train.tiny:tiny_fairmot"), TinyFairMOT)


# ----------------------------------------------------------------------------------------------
# the budget planner


def test_planner_turns_the_budget_into_steps(tmp_path, monkeypatch):
    """A stand-in stage taking 50 ms per step: a 1.5 s budget gives ~30 steps (setup and probe included),
    the plan is stored, and a second call resumes with it instead of probing again."""
    import time

    calls = []

    def fake_stage(cfg, out, stop_at=None):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        start = lb._done_steps(out)
        end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
        calls.append((cfg.steps, stop_at, start, end))
        time.sleep(0.05 * max(0, end - start))
        torch.save({"step": end}, out / "last.pt")
        if stop_at is None or stop_at >= cfg.steps:
            torch.save({}, out / "final.pt")
        return {"history": [{}] * max(0, end - start)}

    monkeypatch.setattr(lb, "_stage_fn", lambda stage: fake_stage)
    r = lb.load_recipe()

    def make(steps):
        return lb.stage_cfg(r, "task", TINY, tmp_path, layers=lb.DEFAULT_LAYERS, data_root=None, steps=steps, overrides={})

    plan, saved = {"model": TINY, "stages": {}}, []
    final = lb.train_stage("task", make, tmp_path / "task", budget_s=1.5, probe_steps=3, max_steps=None, plan=plan,
                           save_plan=lambda: saved.append(copy.deepcopy(plan)), log=lambda s: None)
    steps = plan["stages"]["task"]["steps"]
    assert final.exists() and saved and 20 <= steps <= 31, plan
    assert plan["stages"]["task"]["s_per_step"] == pytest.approx(0.05, abs=0.03)
    assert [c[1] for c in calls] == [1, 4, None] and calls[-1][2:] == (4, steps)  # probe 1 + 3, then resume
    # max_steps caps the plan; a stage already done is not called again.
    n = len(calls)
    assert lb.train_stage("task", make, tmp_path / "task", budget_s=99, probe_steps=3, max_steps=None, plan=plan,
                          save_plan=lambda: None, log=lambda s: None) == final and len(calls) == n
    plan2 = {"model": TINY, "stages": {}}
    lb.train_stage("task", make, tmp_path / "task2", budget_s=1.5, probe_steps=3, max_steps=8, plan=plan2,
                   save_plan=lambda: None, log=lambda s: None)
    assert plan2["stages"]["task"]["steps"] == 8 and lb._done_steps(tmp_path / "task2") == 8


def test_refuses_bad_input_before_training(tmp_path):
    with pytest.raises(lb.LeaderboardError, match="over the CPU cap max_cpu_gmacs=0.01"):
        lb.add(TINY, out=tmp_path / "o", eval_overrides=["max_cpu_gmacs=0.01"], results=tmp_path, log=lambda s: None)
    assert not (tmp_path / "o").exists()
    with pytest.raises(lb.LeaderboardError, match="did you mean"):
        lb.add("timm:resnet1", out=tmp_path / "o", results=tmp_path, log=lambda s: None)
    with pytest.raises(lb.LeaderboardError, match=r"--layers body\.nope\*: no Conv2d of .* matches"):
        lb.add(TINY, out=tmp_path / "o", layers=["neck.*", "body.nope*"], results=tmp_path, log=lambda s: None)
    with pytest.raises(lb.LeaderboardError, match="never downloads"):
        lb.add(TINY, out=tmp_path / "o", train_overrides={"pretrained": "imagenet"}, results=tmp_path, log=lambda s: None)
    assert not (tmp_path / "o").exists()


def test_plan_of_another_model_is_refused(tmp_path):
    (tmp_path / lb.PLAN).write_text(json.dumps({"model": "timm:resnet18", "stages": {}}))
    with pytest.raises(lb.LeaderboardError, match="use another --out"):
        lb._read_plan(tmp_path, TINY)


# ----------------------------------------------------------------------------------------------
# end to end


def test_add_end_to_end_then_resume(tmp_path, capsys):
    """Tiny timm backbone, 2 steps per stage on the synthetic store, 4 eval frames: 4 records with the
    four method names land in leaderboard.jsonl; a re-run trains nothing and measures nothing again."""
    out, res = tmp_path / "train", tmp_path / "results"
    kw = dict(budget_minutes=0.1, out=out, max_steps=2, train_overrides=SMOKE_TRAIN, eval_overrides=SMOKE_EVAL,
              results=res, log=lambda s: None)
    recs = lb.add(TINY, **kw)
    assert [r["method"]["name"] for r in recs] == list(lb.METHODS)
    assert all(r["kind"] == "run" for r in recs), [r.get("reason") for r in recs]
    on_disk = read_records(res / "records" / "leaderboard.jsonl")
    assert [r["experiment"] for r in on_disk] == [f"leaderboard/{TINY}/{m}" for m in lb.METHODS]
    assert all(r["model"]["name"] == TINY and r["dataset"]["protocol"] == "smoke" for r in on_disk)
    skipping = {r["method"]["name"]: r for r in on_disk if r["method"]["name"] != "dense"}
    assert all(r["cost"]["gmacs_executed"] < r["cost"]["gmacs_dense"] for r in skipping.values())
    assert on_disk[0]["cost"]["gmacs_executed"] == on_disk[0]["cost"]["gmacs_dense"]
    plan = json.loads((out / lb.PLAN).read_text())
    assert {s: plan["stages"][s]["steps"] for s in ("task", "pass_p", "pass_f")} == {"task": 2, "pass_p": 2, "pass_f": 2}
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(ln.startswith(f"leaderboard/{TINY}/") and "MOTA" in ln for ln in lines)

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    logs = {p: p.read_text() for p in out.rglob("log.jsonl")}
    again = lb.add(TINY, **kw)
    assert [r["run_id"] for r in again] == [r["run_id"] for r in recs]  # the records found, not new ones
    assert len(read_records(res / "records" / "leaderboard.jsonl")) == 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps  # no checkpoint rewritten
    assert {p: p.read_text() for p in out.rglob("log.jsonl")} == logs  # no training step ran
    assert all("recorded earlier" in ln for ln in capsys.readouterr().out.splitlines())


def test_cli_errors_and_show(tmp_path, capsys):
    from passbench.cli import main

    assert main(["--results-dir", str(tmp_path), "leaderboard", "add", "timm:resnet1", "--out", str(tmp_path / "o")]) == 2
    assert "did you mean timm:resnet18" in capsys.readouterr().err
    a, b = fixture_run("leaderboard/timm:x/dense"), fixture_run("leaderboard/timm:x/pass_f")
    a["method"]["name"], b["method"]["name"] = "dense", "pass_f"
    for r in (a, b):
        append_record(tmp_path / "records" / "leaderboard.jsonl", r)
    assert main(["--results-dir", str(tmp_path), "leaderboard", "show"]) == 0
    text = capsys.readouterr().out
    assert "leaderboard/timm:x/pass_f" in text and "| dense" in text


# ----------------------------------------------------------------------------------------------
# report helpers (no torch)


def _rec(exp, backbone, method, mota, gmacs, fps, fps_dense, table="leaderboard", created="2026-01-01T00:00:00Z"):
    r = fixture_run(exp)
    r["model"]["name"], r["method"]["name"], r["config"]["table"], r["created_utc"] = backbone, method, table, created
    r["metrics"]["mota"], r["cost"]["gmacs_executed"] = mota, gmacs
    r["speed"]["fps"], r["speed"]["fps_dense"] = fps, fps_dense
    return r


def test_board_one_row_per_backbone_and_method():
    recs = [
        _rec("table3/dense_light", "fairmot_mbv2", "dense", 0.5, 1.0, 20.0, 20.0, table="table3"),
        _rec("table3/pass_f", "fairmot_mbv2", "pass_f", 0.4, 0.8, 15.0, 20.0, table="table3"),
        _rec("figure5/pass_f_192", "fairmot_mbv2", "pass_f", 0.3, 0.5, 30.0, 40.0, table="figure5"),  # not board
        _rec("leaderboard/fairmot_mbv2/pass_f", "fairmot_mbv2", "pass_f", 0.45, 0.7, 16.0, 20.0,
             created="2026-02-01T00:00:00Z"),  # newer: replaces table3/pass_f
        _rec("leaderboard/timm:a/pass_p", "timm:a", "pass_p", 0.2, 2.0, 5.0, 10.0),
        _rec("leaderboard/timm:a/dense", "timm:a", "dense", 0.3, 3.0, 10.0, 10.0),
    ]
    df = board(recs)
    assert list(zip(df.backbone, df.method)) == [("fairmot_mbv2", "dense"), ("fairmot_mbv2", "pass_f"),
                                                 ("timm:a", "dense"), ("timm:a", "pass_p")]
    assert df.loc[1, "experiment"] == "leaderboard/fairmot_mbv2/pass_f" and df.loc[1, "fps_ratio_to_dense"] == 0.8
    assert df.loc[3, "fps_ratio_to_dense"] == 0.5
    assert board([]).empty


def test_pareto_front_hand_example():
    import pandas as pd

    d = pd.DataFrame({"x": [1.0, 2.0, 3.0, 2.5, 1.0], "mota": [0.3, 0.5, 0.6, 0.4, 0.2]})
    assert list(pareto_front(d, "x").index) == [0, 1, 2]  # (2.5, .4) loses to (2, .5); (1, .2) to (1, .3)
    assert list(pareto_front(d, "x", x_lower_is_better=False).index) == [2]  # highest x also has best mota


def test_summary_line_and_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    r = _rec("leaderboard/timm:a/pass_p", "timm:a", "pass_p", 0.2, 2.0, 5.0, 10.0)
    line = summary_line(r)
    assert line.startswith("leaderboard/timm:a/pass_p: MOTA 20.0 %") and "FPS 5.0 (0.50x dense)" in line
    assert "GMACs 2.000 executed" in line
    recs = [r, _rec("leaderboard/timm:a/dense", "timm:a", "dense", 0.3, 3.0, 10.0, 10.0)]
    fig = plot_board(board(recs))
    assert len(fig.axes) >= 3
    fig.savefig(tmp_path / "b.png")
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_board_tells_skipconv_gates_apart_and_reads_speed_records():
    norm = _rec("table3/skipconv", "fairmot_mbv2", "skipconv", 0.5, 0.9, None, None, table="table3")
    gumbel = _rec("table3/skipconv_gumbel", "fairmot_mbv2", "skipconv", 0.49, 0.88, None, None, table="table3")
    rnd = _rec("table3/random_skip", "fairmot_mbv2", "fixed", 0.3, 0.86, None, None, table="table3")
    sp = {"kind": "speed", "experiment": "table3/skipconv", "task": "mot", "created_utc": "2026-03-01T00:00:00Z",
          "speed": {"fps": 8.0, "fps_dense": 10.0, "device": "cpu"}}
    df = board([norm, gumbel, rnd, sp]).set_index("method")
    assert sorted(df.index) == ["random", "skipconv", "skipconv_gumbel"]
    assert df.loc["skipconv", "fps_ratio_to_dense"] == 0.8  # from the speed record: the run was untimed
    assert df.loc["skipconv_gumbel", "fps_ratio_to_dense"] != df.loc["skipconv_gumbel", "fps_ratio_to_dense"]  # NaN


def test_board_prefers_a_later_retiming():
    run = _rec("leaderboard/timm:a/pass_p", "timm:a", "pass_p", 0.2, 2.0, 5.0, 10.0)
    sp = {"kind": "speed", "experiment": "leaderboard/timm:a/pass_p", "task": "mot", "created_utc": "2027-01-01T00:00:00Z",
          "speed": {"fps": 9.0, "fps_dense": 10.0, "device": "cpu"}}
    assert board([run, sp])["fps_ratio_to_dense"].iloc[0] == 0.9
    sp["created_utc"] = "2025-01-01T00:00:00Z"  # older than the run: the run's own timing stands
    assert board([run, sp])["fps_ratio_to_dense"].iloc[0] == 0.5
