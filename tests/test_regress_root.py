"""``passbench regress --data-root DIR``: a given root applies to the cases of its task only."""

from __future__ import annotations

from passbench import regress
from passbench.cli import main
from test_records import fixture_run


def test_tasks_of_a_root(tmp_path):
    (tmp_path / "mot" / "MOT17").mkdir(parents=True)
    (tmp_path / "h36m" / "Human36M").mkdir(parents=True)
    (tmp_path / "both" / "MOT15").mkdir(parents=True)
    (tmp_path / "both" / "Human36M").mkdir(parents=True)
    assert regress.tasks_of_root(None) == set()
    assert regress.tasks_of_root(tmp_path / "mot") == {"mot"}
    assert regress.tasks_of_root(str(tmp_path / "h36m")) == {"pose"}
    assert regress.tasks_of_root(tmp_path / "both") == {"mot", "pose"}
    assert regress.tasks_of_root("synthetic:table2") == {"pose"}
    assert regress.tasks_of_root(tmp_path / "nothing_there") == {"mot"}  # the MOT cases say what is missing


# the model cases of both tasks (the tables case reads records, no data root)
FIVE = ["--case", "dense", "--case", "skipconv", "--case", "pass_f", "--case", "pose_dense", "--case", "pose_pass_f"]


def test_a_mot_root_leaves_the_pose_cases_their_synthetic_data(tmp_path, monkeypatch, capsys):
    """The pose cases used to fail with "no Human3.6M" because the MOT root replaced their synthetic:table2."""
    (tmp_path / "MOT15").mkdir()
    seen = {}

    def measure(case, overrides=(), data_root=None, progress=None):
        seen[case.name] = data_root
        return fixture_run(f"x/{case.name}")

    monkeypatch.setattr(regress, "measure", measure)
    main(["regress", "--golden", str(tmp_path / "g.json"), *FIVE, "--data-root", str(tmp_path)])
    capsys.readouterr()
    assert {n: r for n, r in seen.items()} == {"dense": str(tmp_path), "skipconv": str(tmp_path),
                                               "pass_f": str(tmp_path), "pose_dense": None, "pose_pass_f": None}
    seen.clear()
    main(["regress", "--golden", str(tmp_path / "g.json"), *FIVE, "--data-root", "synthetic:tiny"])
    capsys.readouterr()
    assert seen == {"dense": None, "skipconv": None, "pass_f": None, "pose_dense": "synthetic:tiny",
                    "pose_pass_f": "synthetic:tiny"}
