"""Report: paper transcription vs the paper's markdown, tables/figures derived from fixture records.

All records here are synthetic fixtures written by the tests (``FIXTURE`` dataset), never results.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from passbench import records as R
from passbench.paths import REPO_ROOT
from passbench.report import build_table, leaderboard, load_paper, render
from passbench.report.figures import measured_points, paper_points, plot_figure
from passbench.report.tables import display_frame, write_table
from test_records import fixture_run

PAPER_MD = REPO_ROOT.parent / "shared" / "papers" / "pass-aaai23.md"
needs_paper = pytest.mark.skipif(not PAPER_MD.is_file(), reason=f"paper text not at {PAPER_MD}")


# ----------------------------------------------------------------------------------------------
# an independent read of the paper's markdown tables


def paper_md_tables() -> dict[int, dict[str, list[str]]]:
    """{table number: {method label: [cell strings]}} parsed from the tab-separated markdown blocks."""
    lines = PAPER_MD.read_text().splitlines()
    out: dict[int, dict[str, list[str]]] = {}
    block: list[str] = []
    for line in lines + [""]:
        if "\t" in line:
            block.append(line)
            continue
        if block and line.strip():
            m = re.match(r"Table (\d+):", line.strip())
            if m:
                rows = {}
                for b in block:
                    cells = b.split("\t")
                    if cells[0] and cells[0] != "Method":
                        rows[cells[0].strip()] = [c.strip() for c in cells[1:]]
                out[int(m.group(1))] = rows
            block = []
    return out


def _num(cell: str) -> float:
    """'84.1%' -> 0.841; '572' -> 572.0."""
    return float(cell[:-1]) / 100 if cell.endswith("%") else float(cell)


def _label(label: str) -> str:
    return label.split(" (")[0]


PAPER_COLUMNS = {  # csv file -> numeric columns in the markdown table's column order
    1: ("table1", ["mpjpe_mm", "gmacs", "fps"]),
    2: ("table2", ["mpjpe_mm_talking", "mpjpe_mm_eating", "mpjpe_mm_greeting", "mpjpe_mm_phoning",
                   "mpjpe_mm_photo", "mpjpe_mm_walk", "mpjpe_mm_walkdog"]),
    3: ("table3", ["mota", "idf1", "idp", "ids", "gmacs", "mem_mb", "fps"]),
    4: ("table4", ["mota_mot17_02", "mota_mot17_04", "mota_mot17_13", "mota_mot17_11"]),
}


@needs_paper
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_paper_csvs_match_markdown(n: int) -> None:
    md = paper_md_tables()[n]
    name, cols = PAPER_COLUMNS[n]
    csv = load_paper(name)
    assert sorted(csv["method"]) == sorted(_label(k) for k in md), "same methods as the paper's table"
    by_label = {_label(k): v for k, v in md.items()}
    for _, row in csv.iterrows():
        cells = by_label[row["method"]]
        assert len(cells) == len(cols)
        for col, cell in zip(cols, cells):
            assert row[col] == pytest.approx(_num(cell), abs=1e-9), f"table {n} {row['method']} {col}"
        for frac in ("mota", "idf1", "idp", "patch_skip_rate"):
            if frac in csv.columns and pd.notna(row[frac]):
                assert 0 <= row[frac] <= 1


@needs_paper
def test_paper_skip_rates_match_text() -> None:
    text = PAPER_MD.read_text()
    pose = re.search(r"PASS-P and PASS-F are ([\d.]+)% and ([\d.]+)%, respectively\. As to the model", text)
    mot = re.search(r"PASS-P and PASS-F are ([\d.]+)% and ([\d.]+)%, respectively\. As to the multi", text)
    for name, m in (("table1", pose), ("table2", pose), ("table3", mot), ("table4", mot)):
        df = load_paper(name)
        assert df.loc["pass_p", "patch_skip_rate"] == pytest.approx(float(m.group(1)) / 100)
        assert df.loc["pass_f", "patch_skip_rate"] == pytest.approx(float(m.group(2)) / 100)
        assert df.drop(index=["pass_p", "pass_f"])["patch_skip_rate"].isna().all()


@needs_paper
def test_figure4_points_match_text() -> None:
    text = PAPER_MD.read_text()
    sk = re.search(r"Skip-CONV yields ([\d.]+) MPJPE under ([\d.]+) GMAC", text)
    ps = re.search(r"worst case of PASS \(([\d.]+) MPJPE under ([\d.]+) GMAC\)", text)
    f4 = load_paper("figure4")
    assert (f4.loc["skipconv", "mpjpe_mm"], f4.loc["skipconv", "gmacs"]) == (float(sk.group(1)), float(sk.group(2)))
    assert (f4.loc["pass_worst", "mpjpe_mm"], f4.loc["pass_worst", "gmacs"]) == (float(ps.group(1)), float(ps.group(2)))
    assert load_paper("figure5").empty  # nothing quoted, nothing invented


# ----------------------------------------------------------------------------------------------
# tables from fixture records


def _fixtures() -> list[dict]:
    p = fixture_run("table3/pass_p")  # mota 0.5, fps 10 vs dense 8, skip 0.5
    dense = fixture_run("table3/dense_light")
    dense["config"]["paper_row"] = None
    dense["method"]["name"] = "dense"
    marker = R.skip_marker(
        experiment="table3/hrnet_w32", task="mot", reason="dense hrnet_w32 costs 30 GMACs/frame",
        config={"name": "table3/hrnet_w32", "table": "table3", "paper_row": "hrnet_w32",
                "model": {"name": "hrnet_w32"}, "method": {"name": "dense"}, "dataset": {"name": "MOT15"}},
    )
    other_table = fixture_run("figure5/pass_p_192")
    other_table["config"]["table"] = "figure5"
    return [p, dense, marker, other_table]


def test_table3_measured_beside_paper() -> None:
    df = build_table(3, _fixtures()).set_index("paper_row", drop=False)
    paper = load_paper("table3")
    row = df[df["experiment"] == "table3/pass_p"].iloc[0]
    assert row["mota"] == 0.5 and row["mota_paper"] == paper.loc["pass_p", "mota"]
    assert row["gmacs_executed"] == 1.0 and row["gmacs_executed_paper"] == paper.loc["pass_p", "gmacs"]
    assert row["fps_ratio_to_dense"] == pytest.approx(10.0 / 8.0)
    assert row["patch_skip_rate_paper"] == pytest.approx(0.5425)
    assert row["dataset"] == "FIXTURE:fx" and row["device"] == "cpu" and row["status"] == "measured"
    hr = df[df["experiment"] == "table3/hrnet_w32"].iloc[0]
    assert hr["status"].startswith("not runnable here: dense hrnet_w32")
    assert pd.isna(hr["mota"]) and hr["mota_paper"] == paper.loc["hrnet_w32", "mota"]  # nothing filled in
    dense = df[df["experiment"] == "table3/dense_light"].iloc[0]
    assert pd.isna(dense["mota_paper"])  # no paper row to compare with
    not_run = df[df["status"] == "not run"]
    assert set(not_run["paper_row"]) == set(paper.index) - {"pass_p", "hrnet_w32"}
    assert not_run["mota"].isna().all()
    assert "figure5/pass_p_192" not in set(df["experiment"].dropna())


def test_table_renderings() -> None:
    df = build_table(3, _fixtures())
    md = render(3, df, "md")
    header = md.splitlines()[0]
    assert "MOTA %" in header and "MOTA % (paper)" in header and "FPS / dense" in header
    line = next(ln for ln in md.splitlines() if "table3/pass_p" in ln)
    cells = [c.strip() for c in line.strip("|").split("|")]
    disp = display_frame(3, df)
    cols = list(disp.columns)
    assert cells[cols.index("MOTA %")] == "50.0" and cells[cols.index("MOTA % (paper)")] == "84.1"
    assert cells[cols.index("FPS / dense")] == "1.25x" and cells[cols.index("FPS (dense twin)")] == "10.0 (dense 8.0)"
    assert cols.index("FPS / dense") < cols.index("FPS (dense twin)")  # the same-process ratio first
    # the paper's PASS-P over the FairMOT row it accelerates (Table 3: 37 / 31 FPS), its FPS beside FairMOT's
    assert cells[cols.index("FPS / dense (paper)")] == "1.19x" and cells[cols.index("FPS (dense twin) (paper)")] == "37.0 (dense 31.0)"
    hr = [c.strip() for c in next(ln for ln in md.splitlines() if "paper:hardnet85" in ln).strip("|").split("|")]
    assert hr[cols.index("FPS / dense (paper)")] == "–" and hr[cols.index("FPS (dense twin) (paper)")] == "14.0"  # no twin
    assert "not runnable here" in md
    assert r"\begin{tabular}" in render(3, df, "latex")
    back = pd.read_csv(__import__("io").StringIO(render(3, df, "csv")))
    assert list(back.columns) == list(df.columns)
    with pytest.raises(ValueError):
        render(3, df, "html")


def test_table4_per_sequence_columns() -> None:
    rec = fixture_run("table4/pass_p")
    rec["config"]["table"] = "table4"
    rec["metrics"]["per_sequence"] = {"MOT17-02-FRCNN": {"mota": 0.25}, "MOT17-04-FRCNN": {"mota": 0.75}}
    df = build_table(4, [rec])
    row = df[df["experiment"] == "table4/pass_p"].iloc[0]
    assert (row["mota_mot17_02"], row["mota_mot17_04"]) == (0.25, 0.75)
    assert pd.isna(row["mota_mot17_13"])
    assert row["mota_mot17_02_paper"] == pytest.approx(0.8434)


def test_pose_tables_show_not_runnable_rows() -> None:
    m = R.skip_marker(experiment="table1/mhp", task="pose", reason="no Human3.6M: /x/Human36M does not exist",
                      config={"name": "table1/mhp", "table": "table1", "paper_row": "mhp"})
    df = build_table(1, [m])
    row = df[df["experiment"] == "table1/mhp"].iloc[0]
    assert row["status"].startswith("not runnable here: no Human3.6M")
    assert row["mpjpe_mm_paper"] == 52.06 and pd.isna(row["mpjpe_mm"])
    assert len(build_table(2, [])) == 7


def test_write_table_files(tmp_path: Path) -> None:
    for r in _fixtures():
        R.append_record(tmp_path / "records" / "fx.jsonl", r)
    paths = write_table(3, tmp_path, formats=("md", "csv", "latex"))
    assert sorted(p.name for p in paths) == ["table3.csv", "table3.md", "table3.tex"]
    assert "table3/pass_p" in (tmp_path / "tables" / "table3.md").read_text()


# ----------------------------------------------------------------------------------------------
# figures and leaderboard


def test_figure5_points_and_files(tmp_path: Path) -> None:
    recs = _fixtures()
    meas = measured_points(recs, "mot", "mota", ("table3", "figure5"))
    assert set(meas["experiment"]) == {"table3/pass_p", "table3/dense_light", "figure5/pass_p_192"}
    paper = paper_points(5)
    t3 = load_paper("table3")
    assert len(paper) == len(t3) and set(paper["source"]) == {"paper, Table 3"}
    assert sorted(paper["gmacs"]) == sorted(t3["gmacs"])
    paths = plot_figure(5, recs, tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paths4 = plot_figure(4, [], tmp_path)  # paper points only
    assert paths4[0].exists()


def test_leaderboard_orders_by_accuracy() -> None:
    a, b = fixture_run("table3/a"), fixture_run("table3/b")
    b["metrics"]["mota"] = 0.9
    lb = leaderboard([a, b] + [R.skip_marker(experiment="table3/c", task="mot", reason="r", config={})])
    assert list(lb["experiment"]) == ["table3/b", "table3/a"]
    assert lb.loc[0, "fps_ratio_to_dense"] == pytest.approx(1.25)
    assert leaderboard([]).empty


def test_report_imports_no_torch() -> None:
    code = "import sys, passbench.report, passbench.records; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_leaderboard_notebook_executes(tmp_path: Path, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for r in _fixtures():
        R.append_record(tmp_path / "records" / "fixtures.jsonl", r)
    monkeypatch.setenv("PASSBENCH_RESULTS", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the kernel imports this checkout's passbench
    nb = nbformat.read(REPO_ROOT / "notebooks" / "leaderboard.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) + str(o.get("data", {}).get("text/html", ""))
        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "3 run records, 1 skip markers" in text
    assert "table3/pass_p" in text and "dense hrnet_w32 costs 30 GMACs/frame" in text
    assert (tmp_path / "figures" / "figure5.png").exists()


def test_figure_series_separates_threshold_sweep() -> None:
    import pandas as pd

    from passbench.report.figures import series

    meas = pd.DataFrame([
        dict(method="pass_f", input="384x224", gmacs=0.77, value=0.40, threshold=None),
        dict(method="pass_f", input="512x288", gmacs=1.30, value=0.22, threshold=None),
        dict(method="pass_f", input="384x224", gmacs=0.89, value=0.44, threshold=0.7),
        dict(method="dense", input="384x224", gmacs=1.05, value=0.52, threshold=None),
    ])
    lines = dict(series(meas))
    assert set(lines) == {"measured: dense", "measured: pass_f",
                          "measured: pass_f, gate threshold sweep at 384x224"}
    assert len(lines["measured: pass_f"]) == 2  # the input-size line has no threshold point
    sweep = lines["measured: pass_f, gate threshold sweep at 384x224"]
    assert sorted(sweep["gmacs"]) == [0.77, 0.89]  # the default-threshold point starts the sweep


def test_smoke_rows_sit_beside_no_paper_value():
    # a run on the cut MOT17-mini (12 frames) is a pipeline check: status says smoke, the paper's value
    # for its paper row appears in its own "not run" row instead
    smoke = fixture_run("table4/pass_f", dataset={"name": "MOT17-mini", "split": "train", "protocol": "full",
                                                   "frames": None, "sequences": ["MOT17-02-FRCNN"]})
    smoke["config"].update(table="table4", paper_row="pass_f")
    df = build_table(4, [smoke])
    row = df[df["experiment"] == "table4/pass_f"].iloc[0]
    assert row["status"].startswith("smoke") and pd.isna(row["mota_mot17_02_paper"])
    paper_row = df[(df["experiment"].isna()) & (df["paper_row"] == "pass_f")].iloc[0]
    assert paper_row["status"] == "not run" and paper_row["mota_mot17_02_paper"] == pytest.approx(0.8443)
