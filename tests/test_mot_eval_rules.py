"""MOTChallenge evaluation rules of ``passbench.metrics.mot``, each pinned by a hand-worked count or by
trackeval 1.3.0 itself (the official evaluator's NumPy-2 fork): its ``MotChallenge2DBox`` reading the same
rows from text files and preprocessing them, its ``_calculate_box_ious``, and its CLEAR / Identity / HOTA
classes run on *its own* preprocessed data.

Complements ``test_mot_metrics.py``: box IoU corner cases, MOT20's extra distractor, the IoU >= 0.5 - eps
boundaries, tables without ``conf`` / ``cls`` or read as floats, default frame ranges, the error messages,
the IoU threshold, and the input forms of ``evaluate_sequences``.
"""

import re
from itertools import count
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from passbench.metrics.mot import BACKENDS, box_iou, evaluate_sequence, evaluate_sequences, preprocess

trackeval = pytest.importorskip("trackeval")
pytest.importorskip("motmetrics")

EPS = float(np.finfo(float).eps)
COLS = ["frame", "id", "x", "y", "w", "h", "conf", "cls", "vis"]


def _gt(rows):
    """gt table from ``(frame, id, x, y, w, h, conf, cls)`` rows (visibility 1)."""
    return pd.DataFrame([(*r, 1.0) for r in rows], columns=COLS)


def _res(rows):
    """results table from ``(frame, id, x, y, w, h)`` rows (confidence 1)."""
    return pd.DataFrame(rows, columns=COLS[:6]).assign(conf=1.0)


def _counts(r):
    return r["tp"], r["fp"], r["fn"], r["num_frames"]


# ----------------------------------------------------------------------------------------------
# the oracle: trackeval's own dataset reader + preprocessing + metrics on the same rows as text files

_DIRS = count()


def _write(path, df, is_gt):
    """MOTChallenge text rows in *table order* (TrackEval keeps file order within a frame); every value as
    ``repr(float)`` (exact round trip). Results get class -1 unless the table has a ``cls`` column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for r in df.to_dict("records"):
        vals = [r["frame"], r["id"], r["x"], r["y"], r["w"], r["h"], r.get("conf", 1.0),
                r.get("cls", 1 if is_gt else -1), r.get("vis", -1), -1]
        lines.append(",".join(repr(float(v)) for v in vals) + "\n")
    path.write_text("".join(lines))


def _te_data(tmp_path, gt, res, num_frames, benchmark):
    """TrackEval's preprocessed data dict (``MotChallenge2DBox.get_preprocessed_seq_data``)."""
    from trackeval.datasets import MotChallenge2DBox

    root = tmp_path / f"te{next(_DIRS)}"
    _write(root / "gt" / "s" / "gt" / "gt.txt", gt, True)
    _write(root / "trk" / "t" / "data" / "s.txt", res, False)
    ds = MotChallenge2DBox({"GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trk"),
                            "BENCHMARK": benchmark, "SKIP_SPLIT_FOL": True, "SEQ_INFO": {"s": num_frames},
                            "TRACKERS_TO_EVAL": ["t"], "PRINT_CONFIG": False})
    return ds.get_preprocessed_seq_data(ds.get_raw_seq_data("t", "s"), "pedestrian")


def _te_summary(data, iou=0.5):
    """trackeval's CLEAR / Identity / HOTA on trackeval's own data, in passbench's key names."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    cfg = {"THRESHOLD": iou, "PRINT_CONFIG": False}
    c, i, h = CLEAR(cfg).eval_sequence(data), Identity(cfg).eval_sequence(data), HOTA().eval_sequence(data)
    return {"mota": c["MOTA"], "motp": c["MOTP"], "idf1": i["IDF1"], "idp": i["IDP"], "idr": i["IDR"],
            "idsw": c["IDSW"], "fp": c["CLR_FP"], "fn": c["CLR_FN"], "tp": c["CLR_TP"], "mt": c["MT"], "ml": c["ML"],
            "pt": c["PT"], "frag": c["Frag"], "hota": np.mean(h["HOTA"]), "deta": np.mean(h["DetA"]),
            "assa": np.mean(h["AssA"]), "loca": np.mean(h["LocA"])}


def _assert_same_data(ours, theirs):
    for k in ("num_timesteps", "num_gt_ids", "num_tracker_ids", "num_gt_dets", "num_tracker_dets"):
        assert ours[k] == theirs[k], k
    for k in ("gt_ids", "tracker_ids", "similarity_scores"):
        assert len(ours[k]) == len(theirs[k]) == theirs["num_timesteps"], k
        for t, (a, b) in enumerate(zip(ours[k], theirs[k])):
            np.testing.assert_array_equal(a, b, err_msg=f"{k} at timestep {t}")


def _assert_same_metrics(ours, theirs, keys=None):
    for k in keys or theirs:
        assert ours[k] == pytest.approx(float(theirs[k]), abs=1e-12), f"{k}: ours {ours[k]} trackeval {theirs[k]}"


# ----------------------------------------------------------------------------------------------
# box IoU


def test_box_iou_corner_cases_hand_worked_and_as_trackeval():
    from trackeval.datasets._base_dataset import _BaseDataset

    a = [[0, 0, 10, 10]]
    # same columns, one 10 px below the other: x-overlap 10, y-overlap max(10 - 20, 0) = 0 -> IoU 0
    assert box_iou(a, [[0, 20, 10, 10]]).tolist() == [[0.0]]
    # a zero-width box (area 0 <= eps) inside a: IoU 0 (neither NaN nor some intersection / 100)
    assert box_iou(a, [[5, 0, 0, 10]]).tolist() == [[0.0]]
    # two empty boxes: union 0 <= eps -> TrackEval sets the union to 1 and the intersection to 0 -> 0, not NaN
    assert box_iou([[3, 3, 0, 0]], [[3, 3, 0, 0]]).tolist() == [[0.0]]
    # a box of area exactly eps (w 1, h eps) is empty too (TrackEval: area <= 0 + eps), on either side; otherwise
    # its IoU with the unit box would be intersection eps / union 1 = eps
    thin, unit = [[0, 0, 1, EPS]], [[0, 0, 1, 1]]
    assert box_iou(thin, unit).tolist() == [[0.0]] and box_iou(unit, thin).tolist() == [[0.0]]
    # all of them at once, bit for bit as TrackEval's own function
    boxes = np.array([[0, 0, 10, 10], [0, 20, 10, 10], [5, 0, 0, 10], [3, 3, 0, 0], [0, 0, 1, EPS], [0, 0, 1, 1],
                      [2, 1, 6, 7]], float)
    np.testing.assert_array_equal(box_iou(boxes, boxes), _BaseDataset._calculate_box_ious(boxes, boxes))


def test_box_iou_of_float32_boxes_is_the_float64_iou_of_their_values():
    # a tracker's float32 boxes, written to a results file and read by TrackEval as float64, are scored in
    # float64: the IoU must be that of the (exactly converted) float64 values, not float32 arithmetic
    # (e.g. 0.1 + 10.3 rounds differently in float32: an IoU ~5e-8 off, enough to flip a threshold decision)
    from trackeval.datasets._base_dataset import _BaseDataset

    a32 = np.array([[0.1, 0.2, 10.3, 20.7], [3.3, 1.7, 7.1, 9.9]], np.float32)
    b32 = np.array([[0.3, 0.1, 10.1, 20.3], [1000.1, 5.5, 33.3, 77.7]], np.float32)
    expected = _BaseDataset._calculate_box_ious(a32.astype(np.float64), b32.astype(np.float64))
    assert expected[0, 0] > 0.9  # overlapping pairs, so the arithmetic matters
    np.testing.assert_array_equal(box_iou(a32, b32), expected)
    np.testing.assert_array_equal(box_iou(a32, b32.astype(np.float64)), expected)
    np.testing.assert_array_equal(box_iou(a32.astype(np.float64), b32), expected)


# ----------------------------------------------------------------------------------------------
# preprocessing: TrackEval's rules


def _mixed_scene(seed=3):
    """3 frames with every GT class 1..13 (pedestrians partly zero-marked or with a fractional flag), tracker
    boxes on all of them (on distractors, on class 6 non_mot_vehicle, on cars, on zero-marked pedestrians),
    duplicated boxes (Hungarian ties) and FPs; both tables in shuffled row order (frames interleaved, > 20 rows
    per frame), so the within-frame order, which breaks the ties, matters."""
    rng = np.random.default_rng(seed)
    gt, res = [], []
    for f in (1, 2, 3):
        for k in range(26):
            cls = 1 if k < 13 else k - 12  # 13 pedestrians, then one of each class 1..13
            conf = 0 if (cls != 1 or k % 5 == 4) else (0.7 if k % 5 == 3 else 1)  # 0.7: int() 0 -> zero-marked
            x, y, w, h = 60.0 * k, 10.0 * (k % 3), 30.0, 80.0
            gt.append((f, k + 1, x, y, w, h, conf, cls))
            if rng.random() < 0.85:
                dx, dy = rng.normal(0, 6, 2)
                tid = 1000 + k + 500 * (f == 3 and k % 7 == 0)  # a few id switches in frame 3
                res.append((f, tid, x + dx, y + dy, w, h))
                if k % 4 == 0:  # the same box once more under another id: a tie for the Hungarian matchings
                    res.append((f, 3000 + k, x + dx, y + dy, w, h))
        for j in range(4):  # FPs
            res.append((f, 5000 + 10 * f + j, 2000 + 50 * j, 5.0, 30.0, 80.0))
    gt, res = _gt(gt), _res(res)
    return gt.sample(frac=1, random_state=seed).reset_index(drop=True), \
        res.sample(frac=1, random_state=seed + 1).reset_index(drop=True)


@pytest.mark.parametrize("benchmark", ["MOT15", "MOT16", "MOT17", "MOT20"])
def test_preprocess_and_metrics_agree_with_trackeval_on_a_mixed_scene(tmp_path, benchmark):
    gt, res = _mixed_scene()
    assert (res.groupby("frame").size() > 20).all()
    te = _te_data(tmp_path, gt, res, 3, benchmark)
    ours = preprocess(gt, res, benchmark=benchmark)
    _assert_same_data(ours, te)
    if benchmark == "MOT17":  # the default benchmark
        _assert_same_data(preprocess(gt, res), te)
    te_sum = _te_summary(te)
    assert te_sum["idsw"] > 0 and te_sum["fp"] > 0 and te_sum["fn"] > 0
    _assert_same_metrics(evaluate_sequence(gt, res, benchmark=benchmark), te_sum)
    # motmetrics matches frames a little differently (module docstring); Identity and HOTA agree exactly
    _assert_same_metrics(evaluate_sequence(gt, res, benchmark=benchmark, backend="motmetrics"), te_sum,
                         ["idf1", "idp", "idr", "hota", "deta", "assa", "loca"])


@pytest.mark.parametrize("benchmark, fp", [("MOT20", 0), ("MOT17", 1), ("MOT16", 1), ("MOT15", 1)])
def test_non_mot_vehicle_is_a_distractor_only_in_mot20(tmp_path, benchmark, fp):
    # frame 1: pedestrian P (0, 0, 10, 20) and non_mot_vehicle V (class 6, flag 0) (100, 0, 40, 30); tracker box 7
    # on P, tracker box 8 exactly on V (IoU 1).
    # MOT20 (distractors 2, 7, 8, 12 and 6): box 8 is deleted -> TP 1, FP 0.  MOT16/17: class 6 is no distractor,
    # box 8 stays as an FP.  MOT15: no classes at all; V has flag 0 so it is no GT -> box 8 an FP.  FN 0 always.
    gt = _gt([(1, 1, 0, 0, 10, 20, 1, 1), (1, 2, 100, 0, 40, 30, 0, 6)])
    res = _res([(1, 7, 0, 0, 10, 20), (1, 8, 100, 0, 40, 30)])
    r = evaluate_sequence(gt, res, benchmark=benchmark)
    assert (r["tp"], r["fp"], r["fn"]) == (1, fp, 0)
    te = _te_data(tmp_path, gt, res, 1, benchmark)
    assert te["num_tracker_dets"] == 1 + fp
    _assert_same_data(preprocess(gt, res, benchmark=benchmark), te)


def test_default_benchmark_of_preprocess_is_mot17(tmp_path):
    # tracker box 8 on a static person (class 7): deleted by MOT16/17/20 preprocessing, kept by MOT15
    gt = _gt([(1, 1, 0, 0, 10, 20, 1, 1), (1, 2, 100, 0, 10, 20, 0, 7)])
    res = _res([(1, 7, 0, 0, 10, 20), (1, 8, 100, 0, 10, 20)])
    data = preprocess(gt, res)
    assert (data["num_gt_dets"], data["num_tracker_dets"], data["num_timesteps"]) == (1, 1, 1)
    _assert_same_data(data, _te_data(tmp_path, gt, res, 1, "MOT17"))


def test_matching_at_iou_exactly_one_half_minus_eps(tmp_path):
    # D = (0, 0, 1, 1), T = (0, 0, 1, 2 + 4 eps): intersection 1, union 1 + (2 + 4 eps) - 1 = 2 + 4 eps (exact in
    # float64), IoU = 1 / (2 + 4 eps) = 0.5 (1 - 2 eps + ...) -> the double 0.5 - eps (spacing below 0.5 is eps / 4).
    # TrackEval keeps a pair with similarity >= 0.5 - eps, both in the distractor matching
    # (``matching_scores < 0.5 - eps`` are zeroed) and in CLEAR / Identity (``>= threshold - eps``).
    d, t = (0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 2 + 4 * EPS)
    assert box_iou([d], [t])[0, 0] == 0.5 - EPS
    res = _res([(1, 5, *t)])
    # MOT17, D a distractor (class 8): T is matched to it and deleted -> no FP (FN 0: D is no pedestrian)
    gt8 = _gt([(1, 1, *d, 0, 8)])
    r = evaluate_sequence(gt8, res, benchmark="MOT17")
    assert (r["tp"], r["fp"], r["fn"]) == (0, 0, 0)
    assert _te_data(tmp_path, gt8, res, 1, "MOT17")["num_tracker_dets"] == 0
    # MOT15, D a pedestrian to find: CLEAR matches T (>= 0.5 - eps) -> TP 1, MOTP 0.5 - eps, with either backend.
    # (TrackEval's Identity compares with the threshold itself, ``similarity >= 0.5``: no IDTP -> IDF1 0.)
    gt1 = _gt([(1, 1, *d, 1, -1)])
    te = _te_summary(_te_data(tmp_path, gt1, res, 1, "MOT15"))
    assert (te["tp"], te["fp"], te["fn"], te["idf1"]) == (1, 0, 0, 0)
    for backend in BACKENDS:
        r = evaluate_sequence(gt1, res, benchmark="MOT15", backend=backend)
        assert (r["tp"], r["fp"], r["fn"], r["motp"]) == (1, 0, 0, 0.5 - EPS), backend
    assert evaluate_sequence(gt1, res, benchmark="MOT15")["idf1"] == 0


def test_motmetrics_identity_agrees_with_trackeval_just_below_the_threshold(tmp_path):
    # gt (272.3, 84.4, 38.7, 38.1) and a tracker box of the same x, y, w and twice the height (76.2): geometrically
    # IoU 1/2, in float64 0.49999999999999983 (>= 0.5 - eps, < 0.5). TrackEval: CLEAR matches it (TP 1), Identity
    # does not (IDTP 0 -> IDF1 0). The module docstring: Identity "agrees exactly" between the backends.
    gt = _gt([(1, 1, 272.3, 84.4, 38.7, 38.1, 1, -1)])
    res = _res([(1, 5, 272.3, 84.4, 38.7, 76.2)])
    assert 0.5 - EPS <= box_iou(gt[["x", "y", "w", "h"]], res[["x", "y", "w", "h"]])[0, 0] < 0.5
    te = _te_summary(_te_data(tmp_path, gt, res, 1, "MOT15"))
    assert (te["tp"], te["idf1"]) == (1, 0)
    assert evaluate_sequence(gt, res, benchmark="MOT15")["idf1"] == 0  # trackeval backend: agrees
    r = evaluate_sequence(gt, res, benchmark="MOT15", backend="motmetrics")
    assert r["tp"] == 1
    assert (r["idf1"], r["idp"], r["idr"]) == (0, 0, 0)  # motmetrics backend (1, 1, 1 with CLEAR's eps test)


def test_tables_without_conf_and_cls_columns():
    # gt with only frame, id, x, y, w, h: every row a considered pedestrian (class 1, flag 1); results without
    # conf / cls. Frame 1: pedestrians A (0, 0, 10, 20) and B (50, 0, 10, 20); tracker 7 exactly on A, tracker 8
    # at (200, 0): TP 1 (A), FN 1 (B), FP 1 (8) under every benchmark's rules.
    gt = pd.DataFrame([(1, 1, 0, 0, 10, 20), (1, 2, 50, 0, 10, 20)], columns=COLS[:6])
    res = pd.DataFrame([(1, 7, 0, 0, 10, 20), (1, 8, 200, 0, 10, 20)], columns=COLS[:6])
    for benchmark in ("MOT15", "MOT17", "MOT20"):
        r = evaluate_sequence(gt, res, benchmark=benchmark)
        assert _counts(r) == (1, 1, 1, 1), benchmark


def test_float_tables_are_read_as_trackeval_reads_the_text(tmp_path):
    # A table of floats (np.loadtxt of a MOT file). TrackEval reads the frame as int(float(col 0)), ids and classes
    # with astype(int) and the consider flag as int(col 6) (``zero_marked``): conf 0.7 -> 0, frame 2.9 -> 2.
    # Frame 1: pedestrian 1 found by tracker 5; pedestrian 2 has conf 0.7 (zero-marked: no GT), tracker 6 on it
    # stays (an FP: zero-marked pedestrians are no distractors). Frame "2.9" = 2: pedestrian 1, tracker 5 on it.
    # Hand count (MOT17): TP 2, FP 1, FN 0 over 2 frames.
    gt = _gt([(1.0, 1.0, 0, 0, 10, 20, 1.0, 1.0), (1.0, 2.0, 50, 0, 10, 20, 0.7, 1.0),
              (2.9, 1.0, 0, 0, 10, 20, 1.0, 1.0)]).astype(float)
    res = _res([(1.0, 5.0, 0, 0, 10, 20), (1.0, 6.0, 50, 0, 10, 20), (2.0, 5.0, 0, 0, 10, 20)]).astype(float)
    r = evaluate_sequence(gt, res, benchmark="MOT17")
    assert _counts(r) == (2, 1, 0, 2)
    te = _te_data(tmp_path, gt, res, 2, "MOT17")
    _assert_same_data(preprocess(gt, res, benchmark="MOT17"), te)
    _assert_same_metrics(r, _te_summary(te))
    # ids 3.2 and 3.7 in one frame are both id 3 to TrackEval, whose id check then fails
    dup = _gt([(1.0, 3.2, 0, 0, 10, 20, 1.0, 1.0), (1.0, 3.7, 50, 0, 10, 20, 1.0, 1.0)]).astype(float)
    with pytest.raises(trackeval.utils.TrackEvalException, match=r"same ID more than once .*ids: 3\)"):
        _te_data(tmp_path, dup, res.iloc[:0], 1, "MOT17")
    with pytest.raises(ValueError, match=r"^gt: an id appears twice in frame 1$"):
        preprocess(dup, res.iloc[:0], benchmark="MOT17")


def test_tracker_class_one_is_accepted():
    # TrackEval raises only for a tracker class > 1; class 1 (pedestrian) is fine: TP 1
    gt = _gt([(1, 1, 0, 0, 10, 20, 1, 1)])
    r = evaluate_sequence(gt, _res([(1, 5, 0, 0, 10, 20)]).assign(cls=1), benchmark="MOT17")
    assert _counts(r) == (1, 0, 0, 1)


def test_frames_default_to_one_up_to_the_last_frame_of_either_table():
    ped = (0, 0, 10, 20)
    gt3 = _gt([(f, 1, *ped, 1, 1) for f in (1, 2, 3)])
    # gt beyond the results: frames 1..3; the pedestrian found in frame 1 only -> TP 1, FN 2
    assert _counts(evaluate_sequence(gt3, _res([(1, 5, *ped)]))) == (1, 0, 2, 3)
    # results beyond the gt: frames 1..3; tracker 6 in frame 3 on nothing -> an FP
    gt1 = _gt([(1, 1, *ped, 1, 1)])
    assert _counts(evaluate_sequence(gt1, _res([(1, 5, *ped), (3, 6, *ped)]))) == (1, 1, 0, 3)
    # both in frame 1 only: one frame
    assert _counts(evaluate_sequence(gt1, _res([(1, 5, *ped)]))) == (1, 0, 0, 1)
    # an empty results table (the tracker output nothing): frames 1..3 of the gt, all FN
    no_res = _res([]).astype({"frame": np.int64, "id": np.int64})
    assert _counts(evaluate_sequence(gt3, no_res)) == (0, 0, 3, 3)
    # an empty gt table (nothing to find): frames 1..2 of the results, all FP
    no_gt = _gt([]).astype({"frame": np.int64, "id": np.int64})
    assert _counts(evaluate_sequence(no_gt, _res([(1, 5, *ped), (2, 5, *ped)]))) == (0, 2, 0, 2)


# ----------------------------------------------------------------------------------------------
# error messages


_G = _gt([(1, 1, 0, 0, 10, 20, 1, 1), (2, 1, 0, 0, 10, 20, 1, 1)])
_R = _res([(1, 5, 0, 0, 10, 20), (2, 5, 0, 0, 10, 20)])


@pytest.mark.parametrize("call, message", [
    (lambda: evaluate_sequence(_G.drop(columns=["x", "w"]), _R),
     "gt table lacks columns ['x', 'w'] (has ['frame', 'id', 'y', 'h', 'conf', 'cls', 'vis'])"),
    (lambda: evaluate_sequence(_G, _R.drop(columns=["h"])),
     "results table lacks columns ['h'] (has ['frame', 'id', 'x', 'y', 'w', 'conf'])"),
    (lambda: preprocess(_G, _R, benchmark="MOT18"),
     "benchmark must be one of ('MOT15', 'MOT16', 'MOT17', 'MOT20'), got 'MOT18'"),
    (lambda: evaluate_sequence(_G, _R, frames=[]), "frames is empty"),
    (lambda: evaluate_sequence(pd.concat([_G, _G.iloc[1:]]), _R), "gt: an id appears twice in frame 2"),
    (lambda: evaluate_sequence(_G, pd.concat([_R, _R.iloc[1:]])), "results: an id appears twice in frame 2"),
    (lambda: evaluate_sequence(_G, _R.astype(float).assign(cls=2.0)),
     "results: class 2 in frame 1; MOTChallenge evaluates only pedestrians (class column must be -1 or 1)"),
    (lambda: evaluate_sequence(_G.astype(float).assign(cls=14.0), _R), "gt: invalid classes [14] in frame 1"),
    (lambda: evaluate_sequence(_G, _R, backend="TrackEval"),
     "backend must be one of ('trackeval', 'motmetrics'), got 'TrackEval'"),
    (lambda: evaluate_sequence(_G, _R, iou=0), "iou must be in (0, 1], got 0"),
    (lambda: evaluate_sequences([(_G, _R, "MOT17")], iou=1.5), "iou must be in (0, 1], got 1.5"),
    (lambda: evaluate_sequences([]), "evaluate_sequences: no sequences given"),
    (lambda: evaluate_sequences({}), "evaluate_sequences: no sequences given"),
    (lambda: evaluate_sequences({"a": SimpleNamespace(gt=None, benchmark="MOT17")}, {"a": _R}),
     "sequence 'a' has no ground truth"),
], ids=["gt-columns", "results-columns", "benchmark", "frames-empty", "gt-dup-id", "results-dup-id",
        "results-class", "gt-class", "backend", "iou-0", "iou-1.5", "no-seqs-list", "no-seqs-dict", "no-gt"])
def test_value_error_messages(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        call()


@pytest.mark.parametrize("results, name", [({"a": _R}, "b"), (None, "a")], ids=["missing-name", "no-results"])
def test_missing_results_key_error_names_the_sequence(results, name):
    seqs = {"a": SimpleNamespace(gt=_G, benchmark="MOT17"), "b": SimpleNamespace(gt=_G, benchmark="MOT17")}
    with pytest.raises(KeyError, match="^" + re.escape(repr(f"no results for sequence {name!r}")) + "$") as e:
        evaluate_sequences(seqs, results)
    assert e.value.args == (f"no results for sequence {name!r}",)


# ----------------------------------------------------------------------------------------------
# IoU threshold, MOTP without matches, printing


def _threshold_scene():
    # pedestrian (0, 0, 10, 20) in frames 1, 2; tracker 5 on it: exactly in frame 1 (IoU 1), in frame 2 as
    # (0, 0, 10, 11): intersection 110, union 200 + 110 - 110 = 200 -> IoU 0.55
    gt = _gt([(1, 1, 0, 0, 10, 20, 1, 1), (2, 1, 0, 0, 10, 20, 1, 1)])
    return gt, _res([(1, 5, 0, 0, 10, 20), (2, 5, 0, 0, 10, 11)])


def test_iou_threshold_reaches_clear_and_identity(tmp_path):
    gt, res = _threshold_scene()
    # at 0.5 both frames match: TP 2, IDF1 1. At 0.6 frame 2 does not: TP 1, FP 1, FN 1, MOTA 1 - 2 / 2 = 0;
    # Identity: IDTP 1, IDFP 1, IDFN 1 -> IDF1 2 / (2 + 1 + 1) = 0.5
    for backend in BACKENDS:
        r5 = evaluate_sequence(gt, res, iou=0.5, backend=backend)
        assert (r5["tp"], r5["fp"], r5["fn"], r5["idf1"]) == (2, 0, 0, 1.0), backend
        r6 = evaluate_sequence(gt, res, iou=0.6, backend=backend)
        assert (r6["tp"], r6["fp"], r6["fn"], r6["mota"], r6["idf1"]) == (1, 1, 1, 0.0, 0.5), backend
        # iou_threshold is evaluate_sequences' alias of iou (the config's name)
        rs = evaluate_sequences([(gt, res, "MOT17")], iou_threshold=0.6, backend=backend)
        assert (rs["tp"], rs["fp"], rs["fn"], rs["idf1"]) == (1, 1, 1, 0.5), backend
    _assert_same_metrics(r6, _te_summary(_te_data(tmp_path, gt, res, 2, "MOT17"), iou=0.6))


def test_iou_threshold_one_accepts_only_identical_boxes():
    # frame 1: pedestrians A (0, 0, 10, 20), B (50, 0, 10, 20); tracker 5 exactly on A, tracker 6 at (51, 0, 10, 20)
    # on B (IoU 180 / 220 = 0.82). iou = 1 (allowed: (0, 1]): only A matches -> TP 1, FP 1, FN 1; at 0.8 both.
    gt = _gt([(1, 1, 0, 0, 10, 20, 1, 1), (1, 2, 50, 0, 10, 20, 1, 1)])
    res = _res([(1, 5, 0, 0, 10, 20), (1, 6, 51, 0, 10, 20)])
    assert _counts(evaluate_sequence(gt, res, iou=1.0)) == (1, 1, 1, 1)
    assert _counts(evaluate_sequence(gt, res, iou=0.8)) == (2, 0, 0, 1)


def test_motp_without_any_match_is_zero_with_both_backends(tmp_path):
    # one pedestrian, one tracker box 100 px away: TP 0, FP 1, FN 1, MOTA 1 - 2 / 1 = -1; TrackEval's
    # MOTP = MOTP_sum / max(1, TP) = 0
    gt = _gt([(1, 1, 0, 0, 10, 20, 1, 1)])
    res = _res([(1, 5, 100, 0, 10, 20)])
    te = _te_summary(_te_data(tmp_path, gt, res, 1, "MOT17"))
    assert (te["tp"], te["motp"], te["mota"]) == (0, 0, -1)
    for backend in BACKENDS:
        r = evaluate_sequence(gt, res, backend=backend)
        assert (r["tp"], r["fp"], r["fn"], r["motp"], r["mota"]) == (0, 1, 1, 0.0, -1.0), backend


def test_evaluation_prints_nothing(capsys):
    gt, res = _threshold_scene()
    capsys.readouterr()
    for backend in BACKENDS:
        evaluate_sequence(gt, res, iou=0.6, backend=backend)
        evaluate_sequences([(gt, res, "MOT17")], backend=backend)
    assert capsys.readouterr().out == ""


def test_summary_keys_and_loca(tmp_path):
    gt, res = _threshold_scene()
    r = evaluate_sequence(gt, res)
    assert set(r) == {"mota", "motp", "idf1", "idp", "idr", "idsw", "fp", "fn", "mt", "ml", "pt", "frag", "hota",
                      "deta", "assa", "loca", "recall", "precision", "tp", "num_gt", "num_frames"}
    # HOTA's LocA: per alpha the matched pairs' mean IoU, (1 + 0.55) / 2 = 0.775 while both pairs match (alpha up
    # to ~0.55), 1 above (the IoU-1 pair alone): a mean over the 19 alphas strictly between 0.775 and 1; the exact
    # value is trackeval's on its own data
    _assert_same_metrics(r, _te_summary(_te_data(tmp_path, gt, res, 2, "MOT17")), ["loca", "hota", "deta", "assa"])
    assert 0.775 < r["loca"] < 1


# ----------------------------------------------------------------------------------------------
# evaluate_sequences: input forms, names, frames, benchmarks (default backend)


def _two_frame_seq(cls=1):
    # pedestrian (0, 0, 10, 20) in frames 1, 2; tracker 5 exactly on it in frame 1, tracker 6 far away in frame 2.
    # All frames: TP 1, FP 1, FN 1 (2 frames); frames [1]: TP 1 (1 frame); frames [2]: FP 1, FN 1 (1 frame).
    # cls -1 is how MOT15 gt files mark the class column: valid for MOT15 only (MOT17 rejects class -1).
    gt = _gt([(1, 1, 0, 0, 10, 20, 1, cls), (2, 1, 0, 0, 10, 20, 1, cls)])
    return gt, _res([(1, 5, 0, 0, 10, 20), (2, 6, 300, 0, 10, 20)])


ALL, F1, F2 = (1, 1, 1, 2), (1, 0, 0, 1), (0, 1, 1, 1)


def _per_seq(out):
    return {n: _counts(r) for n, r in out["per_sequence"].items()}


def test_evaluate_sequences_list_input():
    g15, r15 = _two_frame_seq(cls=-1)
    g17, r17 = _two_frame_seq()
    items = [(g15, r15, "MOT15"), (g17, r17, "MOT17", [2]), (g17, r17, "MOT17")]
    # names seq0, seq1, seq2; a frames mapping by those names; a tuple's own frames win; no entry -> all frames
    out = evaluate_sequences(items, frames={"seq0": [1], "seq1": [1]})
    assert _per_seq(out) == {"seq0": F1, "seq1": F2, "seq2": ALL}
    assert _counts(out) == (2, 2, 2, 4) and out["num_gt"] == 4
    # one frames value for all (the own frames still win)
    assert _per_seq(evaluate_sequences(items, frames=[1])) == {"seq0": F1, "seq1": F2, "seq2": F1}
    # the benchmark of each tuple is used: MOT15-style class -1 is invalid for MOT17
    with pytest.raises(ValueError, match=r"^gt: invalid classes \[-1\] in frame 1$"):
        evaluate_sequences([(g15, r15, "MOT17")])


def test_evaluate_sequences_mapping_of_tuples():
    g15, r15 = _two_frame_seq(cls=-1)
    g17, r17 = _two_frame_seq()
    items = {"a": (g15, r15, "MOT15"), "b": (g17, r17, "MOT17", [2]), "c": (g17, r17, "MOT17")}
    out = evaluate_sequences(items, frames={"a": [1], "b": [1]})
    assert _per_seq(out) == {"a": F1, "b": F2, "c": ALL}
    assert _counts(out) == (2, 2, 2, 4)
    assert _per_seq(evaluate_sequences(items, frames=[1])) == {"a": F1, "b": F2, "c": F1}
    assert _per_seq(evaluate_sequences(items)) == {"a": ALL, "b": F2, "c": ALL}


def test_evaluate_sequences_mapping_of_sequence_objects():
    g15, r15 = _two_frame_seq(cls=-1)
    g17, r17 = _two_frame_seq()
    seqs = {"a": SimpleNamespace(gt=g17, benchmark="MOT17"), "b": SimpleNamespace(gt=g15, benchmark="MOT15")}
    out = evaluate_sequences(seqs, {"a": r17, "b": r15}, frames={"a": [2]})
    assert _per_seq(out) == {"a": F2, "b": ALL}
    assert _per_seq(evaluate_sequences(seqs, {"a": r17, "b": r15}, frames=[1])) == {"a": F1, "b": F1}
