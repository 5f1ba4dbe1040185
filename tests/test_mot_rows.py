"""gt rows of non-positive size: what MOTChallenge's own evaluator (TrackEval) does with them decides
which ``passbench.datasets.motio`` drops (with a count) and which it refuses (naming file and line).

Oracle: trackeval's MotChallenge2DBox pipeline on hand-made files. A considered (flag 1, class 1)
gt box of zero or negative width is kept by TrackEval as ground truth that no box can match, so it
costs one false negative: silently lowering MOTA, hence an error. A row TrackEval drops anyway
(consider flag 0; in 9-column gt a class other than 1) cannot change a number: dropped and counted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from passbench.datasets.motio import MOTFormatError, read_mot_table
from passbench.metrics.mot import evaluate_sequence
from test_mot_metrics import _te_summary, _trackeval

pytest.importorskip("trackeval")

TRACKED = "1,1,100,100,50,120,1,-1,-1,-1\n2,1,102,100,50,120,1,-1,-1,-1\n"  # one person, found in both frames


def _files(tmp: Path, gt_text: str) -> tuple[Path, object]:
    gt = tmp / "gt.txt"
    gt.write_text(gt_text)
    res = read_mot_table(_write(tmp / "res.txt", TRACKED), "results").df
    return gt, res


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


@pytest.mark.parametrize("w, h", [(0, 120), (-40, 120), (-40, -120)], ids=["zero", "negative", "both_negative"])
def test_trackeval_scores_a_considered_empty_box_as_a_miss_so_it_is_an_error(tmp_path: Path, w: int, h: int) -> None:
    good = "1,1,100,100,50,120,1,-1,-1,-1\n2,1,102,100,50,120,1,-1,-1,-1\n"
    gt, res = _files(tmp_path, good + f"2,2,300,100,{w},{h},1,-1,-1,-1\n")
    te = _te_summary(_trackeval(tmp_path / "te", "MOT15", {"s": (gt, res, 2)})["s"])
    assert te["num_gt"] == 3 and te["fn"] == 1 and te["mota"] == pytest.approx(2 / 3)  # the empty box is a miss
    with pytest.raises(MOTFormatError, match=rf"gt.txt:3: box width {w} / height {h} must both be > 0"):
        read_mot_table(gt, "gt")


@pytest.mark.parametrize("bench, row", [
    ("MOT15", "2,2,300,100,0,120,0,-1,-1,-1"),  # MOT15: consider flag 0
    ("MOT17", "2,2,300,100,-5,120,0,1,1.0"),  # MOT17: flag 0
    ("MOT17", "2,2,300,100,0,120,1,7,1.0"),  # MOT17: a static person (class 7), considered
], ids=["mot15_flag0", "mot17_flag0", "mot17_class7"])
def test_rows_trackeval_never_scores_are_dropped_with_a_count(tmp_path: Path, bench: str, row: str) -> None:
    good = ("1,1,100,100,50,120,1,-1,-1,-1\n2,1,102,100,50,120,1,-1,-1,-1\n" if bench == "MOT15"
            else "1,1,100,100,50,120,1,1,1.0\n2,1,102,100,50,120,1,1,1.0\n")
    gt, res = _files(tmp_path, good + row + "\n")
    te = _te_summary(_trackeval(tmp_path / "te", bench, {"s": (gt, res, 2)})["s"])
    table = read_mot_table(gt, "gt")
    assert table.dropped == (3,) and len(table.df) == 2
    ours = evaluate_sequence(table.df, res, benchmark=bench, frames=range(1, 3))
    assert te["num_gt"] == 2 and ours["num_gt"] == 2  # the same ground truth counted as TrackEval counts it
    for k in ("mota", "idf1", "fn", "fp", "idsw"):
        assert ours[k] == pytest.approx(float(te[k]), abs=1e-12), k


def test_det_rows_of_non_positive_size_and_non_finite_fields_name_the_line(tmp_path: Path) -> None:
    det = _write(tmp_path / "det.txt", "1,-1,10,10,20,40,0.9\n1,-1,10,10,20,0,0.8\n")
    with pytest.raises(MOTFormatError, match=r"det.txt:2: box width 20 / height 0"):
        read_mot_table(det, "det")
    gt = _write(tmp_path / "gt.txt", "1,1,10,10,20,40,1,1,inf\n")  # the visibility column, unused but not finite
    with pytest.raises(MOTFormatError, match=r"gt.txt:1: column 9 is not finite"):
        read_mot_table(gt, "gt")


def test_tracker_results_keep_empty_boxes_as_trackeval_scores_them(tmp_path: Path) -> None:
    """Results are not size-checked: TrackEval counts an empty tracker box as a false positive."""
    gt = _write(tmp_path / "gt.txt", "1,1,100,100,50,120,1,-1,-1,-1\n")
    res = read_mot_table(_write(tmp_path / "r.txt", "1,1,100,100,50,120,1\n1,2,300,100,0,10,1\n"), "results").df
    te = _te_summary(_trackeval(tmp_path / "te", "MOT15", {"s": (gt, res, 1)})["s"])
    ours = evaluate_sequence(read_mot_table(gt, "gt").df, res, benchmark="MOT15", frames=range(1, 2))
    assert te["fp"] == 1 and ours["fp"] == 1 and ours["mota"] == pytest.approx(float(te["mota"]))
