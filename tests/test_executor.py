"""``--executor ray`` (passbench/sched): the driver's one-writer logic against the serial runner with a fake
in-process executor (rows finishing in reverse order, a failing row, resuming, timed rows split into
accuracy + a timing alone), task resources from the config, Ray missing = a usage error; then a real local
2-CPU Ray cluster: a small sweep on a frame slice both ways (records equal to the serial run's, run ids
aside), and, marked slow, ``reproduce 3``'s records and tables byte for byte, ``regress`` and
``leaderboard add`` with two backbones."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from passbench.cli import main
from passbench.config import CONFIGS, load_config, to_dict
from passbench.records import append_record
from passbench.sched import Resources, Task
from passbench.sched.executor import call, runtime_env
from passbench.sched.rows import ROW_MEMORY_MB, resources
from passbench.sched.sweep import run_missing
from test_records import fixture_run

IDS = ("run_id", "created_utc")


def _records(folder: Path) -> dict[str, list[dict]]:
    """``{file name: [records in file order]}`` of a results folder."""
    return {f.name: [json.loads(ln) for ln in f.read_text().splitlines()] for f in sorted((folder / "records").glob("*.jsonl"))}


def _same(a: list[dict], b: list[dict], speed: bool = False) -> None:
    """Two record lists equal apart from run ids and times (and, with ``speed``, the timed numbers);
    the message names the experiment and the sections that differ."""
    assert [r["experiment"] for r in a] == [r["experiment"] for r in b]
    for x, y in zip(a, b):
        x, y = _strip(x, speed), _strip(y, speed)
        assert x == y, (x["experiment"], {k: (x.get(k), y.get(k)) for k in set(x) | set(y) if x.get(k) != y.get(k)})


def _strip(rec: dict, speed: bool = False) -> dict:
    """A record without its run id and time (and, with ``speed``, without the timed numbers)."""
    out = {k: v for k, v in rec.items() if k not in IDS}
    if speed and "speed" in out:
        out.pop("speed")
    return out


# ----------------------------------------------------------------------------------------------
# the driver's logic, with a fake executor (no Ray)


class FakeExecutor:
    """Runs tasks in this process; ``map`` yields them in reverse order (the last row finishes first)."""

    def __init__(self) -> None:
        self.parallel: list[Task] = []
        self.alone: list[Task] = []

    def describe(self) -> str:
        return "a fake executor"

    def map(self, tasks):
        self.parallel += tasks
        done = [call(t) for t in tasks]
        for i in reversed(range(len(tasks))):
            yield i, done[i]

    def run_alone(self, task):
        self.alone.append(task)
        res = call(task)
        res.node, res.cpus = "fake-node", 2.0
        return res


@pytest.fixture()
def fake_rows(monkeypatch, tmp_path):
    """Five tiny configs and a fake ``passbench.runner.run`` (row ``t/r2`` raises while ``fail`` holds it)."""
    import passbench.runner as runner

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    paths = []
    for i in range(5):
        p = cfg_dir / f"r{i}.yaml"
        p.write_text(f"name: t/r{i}\ntable: t\nmodel: {{name: fairmot_mbv2}}\ndataset: {{sequences: [TUD-Campus]}}\nspeed: {{enabled: false}}\n")
        paths.append(p)
    state = {"fail": {"t/r2"}, "ran": []}

    def fake_run(cfg, data_root=None, results=None, write=True, progress=None):
        state["ran"].append(cfg)
        if cfg.name in state["fail"]:
            raise RuntimeError(f"{cfg.name} exploded")
        rec = fixture_run(cfg.name, config=to_dict(cfg), metrics__mota=len(cfg.name) / 100)
        if write:
            append_record(runner.records_file(cfg, results), rec)
        return rec

    monkeypatch.setattr(runner, "run", fake_run)
    return paths, state


def test_rows_finishing_out_of_order_are_written_in_config_order_failures_listed_then_resumed(fake_rows, tmp_path,
                                                                                              capsys):
    """Against the serial loop (``passbench reproduce``'s, same fake rows): the same records in the same order
    although the rows finish last-first; the failing row is listed with its error at the end, exit 1; a
    second sweep runs only that row."""
    paths, state = fake_rows
    serial = tmp_path / "serial"
    import argparse

    from passbench.cli import _run_missing

    args = argparse.Namespace(overrides=[], data_root=None, results_dir=serial, force=False, verbose=False,
                              progress=False)
    assert _run_missing(paths, args).report("serial") == 1
    ray = tmp_path / "ray"
    ex = FakeExecutor()
    out = run_missing(paths, ex, results=ray, progress=False)
    assert [t.key for t in ex.parallel] == [f"t/r{i}" for i in range(5)] and not ex.alone
    assert out.ran == ["t/r0", "t/r1", "t/r3", "t/r4"] and out.failed == ["t/r2"]
    assert out.errors == {"t/r2": "RuntimeError: t/r2 exploded"}
    assert out.report("ray") == 1
    err = capsys.readouterr().err
    assert "FAILED: t/r2" in err and "t/r2: RuntimeError: t/r2 exploded" in err
    a, b = _records(serial), _records(ray)
    assert [r["experiment"] for r in b["t.jsonl"]] == ["t/r0", "t/r1", "t/r3", "t/r4"]
    _same(a["t.jsonl"], b["t.jsonl"])

    state["fail"].clear()
    state["ran"].clear()
    again = run_missing(paths, FakeExecutor(), results=ray, progress=False)
    assert [c.name for c in state["ran"]] == ["t/r2"] and again.ran == ["t/r2"] and again.report("again") == 0
    assert [r["experiment"] for r in _records(ray)["t.jsonl"]] == ["t/r0", "t/r1", "t/r3", "t/r4", "t/r2"]

    class NoCluster(FakeExecutor):  # every row has its record: no cluster is even connected to
        def describe(self):
            raise AssertionError("connected although no row had to run")

    assert run_missing(paths, NoCluster(), results=ray, progress=False).report("done") == 0


def test_timed_rows_run_accuracy_untimed_in_parallel_then_timing_alone(fake_rows, monkeypatch, tmp_path):
    """A timed MOT row: its accuracy with ``speed.enabled=false`` among the parallel tasks, its timing
    (``run_speed``) alone afterwards; the record carries the row's own config and that speed, and says how
    it was scheduled. A timed pose row runs whole, alone."""
    import passbench.runner.speed as speed_mod

    paths, state = fake_rows
    state["fail"].clear()
    timed = paths[0].parent / "timed.yaml"
    timed.write_text("name: t/timed\ntable: t\nmodel: {name: fairmot_mbv2}\ndataset: {sequences: [TUD-Campus]}\nspeed: {enabled: true, threads: 2}\n")
    pose = paths[0].parent / "pose.yaml"
    pose.write_text("name: t/pose\ntable: t\ntask: pose\nmodel: {name: mhp_lpski_w05}\ndataset: {name: Human36M, protocol: mhp-p2, sequences: [S9]}\nspeed: {enabled: true}\n")
    timings = []

    def fake_speed(cfg, data_root=None, write=True, **kw):
        timings.append(cfg)
        return {"speed": {**fixture_run()["speed"], "device": "cpu: fake", "fps": 42.0}}

    monkeypatch.setattr(speed_mod, "run_speed", fake_speed)
    ex = FakeExecutor()
    out = run_missing([timed, paths[1], pose], ex, results=tmp_path / "res", progress=False)
    assert out.ran == ["t/timed", "t/r1", "t/pose"]
    assert [t.key for t in ex.parallel] == ["t/timed", "t/r1"] and [t.key for t in ex.alone] == ["t/timed", "t/pose"]
    ran = {c.name: c for c in state["ran"]}
    assert ran["t/timed"].speed.enabled is False and ran["t/pose"].speed.enabled is True
    assert [c.name for c in timings] == ["t/timed"] and timings[0].speed.enabled is True
    recs = {r["experiment"]: r for r in _records(tmp_path / "res")["t.jsonl"]}
    assert [r for r in recs] == ["t/timed", "t/r1", "t/pose"]  # config order
    assert recs["t/timed"]["config"] == to_dict(load_config(timed)) and recs["t/timed"]["speed"]["fps"] == 42.0
    assert recs["t/timed"]["env"]["device"] == "cpu: fake"
    assert "alone on node fake-node (all 2 CPUs reserved)" in recs["t/timed"]["speed"]["scheduled"]
    assert "whole row" in recs["t/pose"]["speed"]["scheduled"]
    assert "scheduled" not in recs["t/r1"]["speed"]


def test_task_resources_come_from_the_config():
    cfg = load_config(CONFIGS / "table3" / "pass_p.yaml", ["speed.threads=3"])
    assert resources(cfg) == Resources(cpus=3.0, gpus=0.0, memory_mb=ROW_MEMORY_MB)
    assert resources(load_config(CONFIGS / "table3" / "pass_p.yaml", ["speed.device=cuda:1"])).gpus == 1.0
    assert resources(cfg, device="cuda").gpus == 1.0  # a command's --device wins over the config


def test_a_task_error_is_a_result_not_an_exception():
    res = call(Task("k", int, ("not a number",)))
    assert not res.ok and res.error_type == "ValueError" and "not a number" in res.error and "Traceback" in res.traceback
    assert call(Task("k", int, ("7",))).value == 7


def test_runtime_env_puts_this_checkout_first_and_passes_passbench_variables(monkeypatch):
    from passbench.paths import REPO_ROOT

    monkeypatch.setenv("PASSBENCH_DATA", "/some/data")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = runtime_env()["env_vars"]
    assert env["PASSBENCH_DATA"] == "/some/data" and env["PYTHONPATH"] == f"{REPO_ROOT}{os.pathsep}/elsewhere"


def test_executor_ray_without_ray_installed_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["--results-dir", str(tmp_path), "reproduce", "3", "--executor", "ray"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "records").exists()


# ----------------------------------------------------------------------------------------------
# a real local Ray cluster with 2 CPUs (slow: .ci/run runs them with CI=true; the cluster alone takes
# 5-40 s to start on the shared 2-core machine)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster for this module (the executor uses it as it is and leaves it up)."""
    if os.environ.get("CI") == "true":
        import ray  # CI installs the extra (./dev): a missing Ray must fail there, not skip
    else:
        ray = pytest.importorskip("ray")
    for attempt in range(3):  # Ray's raylet gives its agents 15 s to start, which a loaded machine can miss
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20,
                     runtime_env=runtime_env(), logging_level="WARNING")
            break
        except Exception:  # noqa: BLE001
            if attempt == 2:
                raise
    yield ray
    ray.shutdown()


SLICE = ["dataset.sequences=[TUD-Campus]", "dataset.frames=[1,6]", "method.params.execution=sparse"]


@pytest.mark.slow
def test_small_sweep_on_ray_equals_the_serial_run(ray_cluster, tmp_path, capsys):
    """Two light Table 3 rows (timed, 1 thread) and a Table 4 row that is a skip marker here, on 6 frames:
    ``passbench run`` one after the other vs one sweep on the 2-CPU cluster. Every record equal apart from
    run ids, times and the timed numbers; each timing task held both CPUs, each accuracy task one."""
    from passbench.sched import RayExecutor

    ov = SLICE + ["speed.iters=2", "speed.warmup=1", "speed.threads=1"]
    paths = [CONFIGS / "table3" / "dense_light.yaml", CONFIGS / "table3" / "random_skip.yaml",
             CONFIGS / "table4" / "pass_p.yaml"]
    serial, ray = tmp_path / "serial", tmp_path / "ray"
    for p in paths:
        assert main(["--results-dir", str(serial), "run", str(p), *ov]) == 0
    with RayExecutor() as ex:
        out = run_missing(paths, ex, overrides=ov, results=ray, progress=False)
        assert not ex.owned  # the module's cluster, used as it is (and left up)
    assert out.ran == ["table3/dense_light", "table3/random_skip"] and out.skipped == ["table4/pass_p"]
    text = capsys.readouterr().out
    assert "3 rows on ray (the connected cluster): 1 node, 2 CPUs" in text
    a, b = _records(serial), _records(ray)
    assert list(a) == list(b) == ["table3.jsonl", "table4.jsonl"]
    for name in a:
        _same(a[name], b[name], speed=True)
    for s, r in zip(a["table3.jsonl"], b["table3.jsonl"]):
        assert set(r["speed"]) - set(s["speed"]) == {"scheduled"} and r["speed"]["fps"] > 0
        assert "(all 2 CPUs reserved)" in r["speed"]["scheduled"]
    assert a["table4.jsonl"][0]["kind"] == "skipped" and "MOT17" in a["table4.jsonl"][0]["reason"]


@pytest.mark.slow
def test_cli_figure_run_on_ray_refuses_a_bad_override_before_any_worker_runs(ray_cluster, tmp_path, capsys):
    """An invalid half split for every Figure 5 row is the user's mistake, refused when the configs are
    resolved on the driver (passbench.config.check): exit 2 naming the key, no row sent to a worker, nothing
    written. (Rows that fail at run time on their workers are listed with their errors: the fake-executor
    test above, which drives the same sweep code.)"""
    ov = SLICE + ["speed.enabled=false", "speed.threads=1", "dataset.halves={TUD-Campus: middle}"]
    res = tmp_path / "res"
    assert main(["--results-dir", str(res), "figure", "5", "--run", "--executor", "ray", *ov]) == 2
    err = capsys.readouterr().err
    assert "dataset.halves.TUD-Campus" in err and "train, val" in err
    assert not (res / "records").exists()


@pytest.mark.slow
def test_reproduce_table3_on_ray_writes_the_serial_records_and_tables(ray_cluster, tmp_path):
    """``passbench reproduce 3`` (accuracy rows: timing off, 1 thread, 8 frames) with ``--executor local`` and
    ``--executor ray``: the same records in the same order, bit for bit apart from run ids and times, and
    byte-identical table files; a second ray run runs no row that has a run record."""
    ov = SLICE[:1] + ["dataset.frames=[1,8]", SLICE[2], "speed.enabled=false", "speed.threads=1"]
    serial, ray = tmp_path / "serial", tmp_path / "ray"
    assert main(["--results-dir", str(serial), "reproduce", "3", *ov]) == 0
    assert main(["--results-dir", str(ray), "reproduce", "3", "--executor", "ray", *ov]) == 0
    a, b = _records(serial), _records(ray)
    _same(a["table3.jsonl"], b["table3.jsonl"])
    assert len(a["table3.jsonl"]) == 13
    for f in sorted((serial / "tables").iterdir()):
        assert (ray / "tables" / f.name).read_bytes() == f.read_bytes(), f.name
    runs = [r for r in b["table3.jsonl"] if r["kind"] == "run"]
    assert main(["--results-dir", str(ray), "reproduce", "3", "--executor", "ray", *ov]) == 0
    again = _records(ray)["table3.jsonl"]  # as the serial loop: rows with a run record are not run again
    assert again[:13] == b["table3.jsonl"] and [r for r in again if r["kind"] == "run"] == runs
    assert all(r["kind"] == "skipped" for r in again[13:])  # skip markers are retried, as serially


@pytest.mark.slow
def test_regress_on_ray_matches_the_goldens(ray_cluster, capsys):
    from passbench import regress

    assert regress.main(cases=["dense", "pose_dense"], executor="ray") == 0
    assert "regress: ok" in capsys.readouterr().out


@pytest.mark.slow
def test_leaderboard_add_two_backbones_on_ray(ray_cluster, tmp_path, capsys):
    """Two tiny backbones in one call: trained as two Ray tasks, 8 rows in backbone x method order; a
    second call trains and measures nothing."""
    from test_leaderboard import SMOKE_EVAL, SMOKE_TRAIN

    from passbench import leaderboard as lb

    tiny = ["timm:mobilenetv3_small_050", "timm:mobilenetv3_small_075"]
    res = tmp_path / "res"
    args = ["--results-dir", str(res), "leaderboard", "add", *tiny, *SMOKE_EVAL, "--budget-minutes", "0.1",
            "--max-steps", "2", "--out", str(tmp_path / "train"), "--executor", "ray"]
    args += [f"--train={k}={json.dumps(v)}" for k, v in SMOKE_TRAIN.items()]
    assert main(args) == 0
    got = [r["experiment"] for r in _records(res)["leaderboard.jsonl"]]
    assert got == [f"leaderboard/{m}/{meth}" for m in tiny for meth in lb.METHODS]
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [m.replace(":", "_") for m in tiny]
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.count("[recorded earlier]") == 8
