"""``./dev demo`` (``invoke demo``): Table 3 where the MOT sample data is, Table 2's pose rows on the synthetic
preset on a machine without any data (and one line on how to fetch MOT data)."""

from __future__ import annotations

import importlib.util
import invoke

from passbench.paths import REPO_ROOT


def _tasks():
    spec = importlib.util.spec_from_file_location("passbench_tasks", REPO_ROOT / "tasks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Ctx(invoke.Context):
    """Records the commands an invoke task would run (each exits 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.cmds: list[str] = []

    def run(self, cmd: str, **kw):
        self.cmds.append(cmd)
        return type("Result", (), {"exited": 0})()


def test_without_mot_data_the_demo_measures_table2_on_the_synthetic_preset(tmp_path, monkeypatch, capsys):
    tasks = _tasks()
    monkeypatch.setenv("PASSBENCH_DATA", str(tmp_path))  # an empty data root: no MOT15 sequences
    ctx = Ctx()
    tasks.demo.body(ctx, results_dir=str(tmp_path / "demo"))
    (cmd,) = ctx.cmds
    assert " reproduce 2 --data-root synthetic:table2" in cmd and f"--results-dir {tmp_path / 'demo'}" in cmd
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and "passbench data fetch MOT15" in out and "SYNTHETIC" in out


def test_with_the_sample_data_the_demo_is_table3_and_figure5(tmp_path, monkeypatch):
    tasks = _tasks()
    for s in tasks.DEMO_SEQUENCES:
        (tmp_path / "MOT15" / "train" / s).mkdir(parents=True)
    ctx = Ctx()
    tasks.demo.body(ctx, data_root=str(tmp_path), results_dir=str(tmp_path / "demo"))
    assert " reproduce 3 --data-root" in ctx.cmds[0] and " figure 5" in ctx.cmds[1] and len(ctx.cmds) == 2
