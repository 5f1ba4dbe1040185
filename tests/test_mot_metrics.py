"""MOT metrics against independent oracles: motmetrics' own expected TUD numbers, and trackeval 1.3.0
(the official evaluator's NumPy-2 fork) run on files laid out as MotChallenge2DBox expects."""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from passbench.datasets.mot import half_split, load_sequence
from passbench.datasets.motio import read_mot_txt, write_mot_results
from passbench.metrics.mot import BACKENDS, box_iou, evaluate_sequence, evaluate_sequences

mm = pytest.importorskip("motmetrics")
trackeval = pytest.importorskip("trackeval")
MM_DATA = Path(mm.__file__).parent / "data"

# motmetrics 1.4.0 tests/test_metrics.py::test_motchallenge_files, ``expected`` rows (IoU 0.5):
# idf1, idp, idr, recall, precision, GT ids, MT, PT, ML, FP, FN, IDs, FM, MOTA, MOTP (distance = 1 - IoU)
MM_EXPECTED = {
    "TUD-Campus": [0.557659, 0.729730, 0.451253, 0.582173, 0.941441, 8, 1, 6, 1, 13, 150, 7, 7, 0.526462, 0.277201],
    "TUD-Stadtmitte": [0.644619, 0.819760, 0.531142, 0.608997, 0.939920, 10, 5, 4, 1, 45, 452, 7, 6, 0.564014,
                       0.345904],
    "OVERALL": [0.624296, 0.799176, 0.512211, 0.602640, 0.940268, 18, 6, 10, 2, 58, 602, 14, 13, 0.555116, 0.330177],
}


def _ours_as_mm_row(r):
    return [r["idf1"], r["idp"], r["idr"], r["recall"], r["precision"], r["mt"] + r["pt"] + r["ml"], r["mt"], r["pt"],
            r["ml"], r["fp"], r["fn"], r["idsw"], r["frag"], r["mota"], 1 - r["motp"]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_motmetrics_expected_tud_numbers(backend):
    items = {n: (read_mot_txt(MM_DATA / n / "gt.txt", "gt"), read_mot_txt(MM_DATA / n / "test.txt", "results"),
                 "MOT15") for n in ("TUD-Campus", "TUD-Stadtmitte")}
    out = evaluate_sequences(items, backend=backend)
    for name in items:
        r = evaluate_sequence(*items[name][:2], benchmark="MOT15", backend=backend)
        assert r == out["per_sequence"][name]
        np.testing.assert_allclose(_ours_as_mm_row(r), MM_EXPECTED[name], atol=5e-7, rtol=0, err_msg=name)
        assert isinstance(r["idsw"], int) and r["num_frames"] == items[name][0]["frame"].max()
    np.testing.assert_allclose(_ours_as_mm_row(out), MM_EXPECTED["OVERALL"], atol=5e-7, rtol=0)


def test_no_numpy_shim():
    # we hand motmetrics our own IoU instead of restoring np.asfarray (removed in NumPy 2)
    assert int(np.__version__.split(".")[0]) < 2 or not hasattr(np, "asfarray")


def test_box_iou_hand_example():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 5]], float)  # second box is empty
    b = np.array([[5, 0, 10, 10], [20, 20, 1, 1]], float)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0], [0, 0]])


def _frame(rows):
    return pd.DataFrame(rows, columns=["frame", "id", "x", "y", "w", "h", "conf", "cls", "vis"])


def test_preprocessing_hand_example():
    # frame 1: pedestrian A, static person S (class 7, flag 0), ignored pedestrian Z (class 1, flag 0)
    gt = _frame([(1, 1, 0, 0, 10, 20, 1, 1, 1.0), (1, 2, 100, 0, 10, 20, 0, 7, 1.0), (1, 3, 200, 0, 10, 20, 0, 1, 1.0)])
    res = _frame([(1, 7, 0, 0, 10, 20, 1, -1, -1), (1, 8, 101, 0, 10, 20, 1, -1, -1), (1, 9, 200, 1, 10, 20, 1, -1, -1),
                  (1, 10, 400, 0, 10, 20, 1, -1, -1)])
    r = evaluate_sequence(gt, res, benchmark="MOT17")
    # box 8 on the distractor is dropped; box 9 on a flag-0 pedestrian is not (TrackEval) -> FP, as is 10
    assert (r["num_gt"], r["tp"], r["fp"], r["fn"]) == (1, 1, 2, 0)
    r15 = evaluate_sequence(gt.assign(conf=1), res, benchmark="MOT15")  # MOT15: no classes, all considered
    assert (r15["num_gt"], r15["tp"], r15["fp"]) == (3, 3, 1)
    empty = evaluate_sequence(gt, res.iloc[:0], frames=range(1, 4))
    assert (empty["fn"], empty["fp"], empty["mota"], empty["num_frames"]) == (1, 0, 0.0, 3)
    with pytest.raises(ValueError, match="id appears twice in frame 1"):
        evaluate_sequence(gt, pd.concat([res, res.iloc[:1]]))
    with pytest.raises(ValueError, match="class 2 in frame 1"):
        evaluate_sequence(gt, res.assign(cls=2))


# ----------------------------------------------------------------------------------------------
# trackeval oracle on perturbed tracker outputs built from GT


def _perturb(gt, seed, width, height):
    """Tracker output from GT: drop boxes, jitter, swap ids mid-way, add FPs; distractor boxes stay in."""
    rng = np.random.default_rng(seed)
    # pedestrians and distractors (2, 7, 8, 12) stay; of the other classes (cars, occluders) a few, as FPs
    keep = gt["cls"].isin([1, 2, 7, 8, 12]).to_numpy() | (rng.random(len(gt)) < 0.1)
    r = gt.loc[keep, ["frame", "id", "x", "y", "w", "h"]].copy().reset_index(drop=True)
    r = r[rng.random(len(r)) > 0.15].reset_index(drop=True)  # ~15 % misses
    jit = rng.normal(0, 0.08, (len(r), 4)) * r[["w", "h", "w", "h"]].to_numpy()
    r[["x", "y", "w", "h"]] += jit
    r["w"], r["h"] = r["w"].abs() + 1, r["h"].abs() + 1
    mid = int(r["frame"].median())
    ids = np.intersect1d(r.loc[r["frame"] <= mid, "id"], r.loc[r["frame"] > mid, "id"])  # alive on both sides
    for a, b in rng.choice(ids, size=(min(3, len(ids) // 2), 2), replace=False):  # id swaps after frame `mid`
        late = r["frame"] > mid
        ia, ib = late & (r["id"] == a), late & (r["id"] == b)
        r.loc[ia, "id"], r.loc[ib, "id"] = b, a
    r["id"] = r["id"] * 3 + 7  # tracker ids unrelated to gt ids
    n_fp = max(3, len(r) // 20)
    fp = pd.DataFrame({"frame": rng.choice(r["frame"].unique(), n_fp), "id": 100000 + np.arange(n_fp),
                       "x": rng.uniform(0, width, n_fp), "y": rng.uniform(0, height, n_fp),
                       "w": rng.uniform(20, 80, n_fp), "h": rng.uniform(50, 200, n_fp)})
    r = pd.concat([r, fp], ignore_index=True)
    r["conf"] = rng.uniform(0.3, 1, len(r))
    return r


def _trackeval(tmp, benchmark, seqs):
    """trackeval's own pipeline (MotChallenge2DBox + CLEAR/Identity/HOTA) on ``{name: (gt_file, res_df, n)}``."""
    from trackeval import Evaluator
    from trackeval.datasets import MotChallenge2DBox
    from trackeval.metrics import CLEAR, HOTA, Identity

    for name, (gt_file, res, _) in seqs.items():
        (tmp / "gt" / name / "gt").mkdir(parents=True)
        os.symlink(gt_file, tmp / "gt" / name / "gt" / "gt.txt")
        write_mot_results(tmp / "trk" / "t" / "data" / f"{name}.txt", res)
    ds = MotChallenge2DBox({"GT_FOLDER": str(tmp / "gt"), "TRACKERS_FOLDER": str(tmp / "trk"), "BENCHMARK": benchmark,
                            "SKIP_SPLIT_FOL": True, "SEQ_INFO": {n: s[2] for n, s in seqs.items()},
                            "TRACKERS_TO_EVAL": ["t"], "PRINT_CONFIG": False})
    ev = Evaluator({"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "OUTPUT_SUMMARY": False,
                    "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "TIME_PROGRESS": False, "OUTPUT_EMPTY_CLASSES": False,
                    "PRINT_ONLY_COMBINED": True})
    metrics = [CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}), Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
               HOTA({"PRINT_CONFIG": False})]
    res, msg = ev.evaluate([ds], metrics)
    assert msg["MotChallenge2DBox"]["t"] == "Success", msg
    return {k: v["pedestrian"] for k, v in res["MotChallenge2DBox"]["t"].items()}


def _te_summary(r):
    c, i, h = r["CLEAR"], r["Identity"], r["HOTA"]
    return {"mota": c["MOTA"], "motp": c["MOTP"], "idf1": i["IDF1"], "idp": i["IDP"], "idr": i["IDR"],
            "idsw": c["IDSW"], "fp": c["CLR_FP"], "fn": c["CLR_FN"], "mt": c["MT"], "ml": c["ML"], "frag": c["Frag"],
            "hota": float(np.mean(h["HOTA"])), "deta": float(np.mean(h["DetA"])), "assa": float(np.mean(h["AssA"])),
            "num_gt": c["CLR_TP"] + c["CLR_FN"]}


# motmetrics keeps a GT's last-ever match across gaps, TrackEval only the previous timestep's
# (passbench/metrics/mot.py docstring): CLEAR may then differ a little; Identity and HOTA may not.
def _mm_clear_tol(num_gt):
    """A few events (at most 1 % of the GT boxes) may be matched differently."""
    n = max(3, num_gt // 100)
    return {"mota": 3 * n / num_gt, "motp": n / num_gt, "idsw": n, "fp": n, "fn": n, "frag": n, "mt": 1, "ml": 1}


def _assert_agree(ours, theirs, where, tol=None):
    for k, v in theirs.items():
        t = (tol or {}).get(k, 1e-12)
        assert ours[k] == pytest.approx(float(v), abs=t), f"{where}: {k} ours {ours[k]} trackeval {v}"


GROUPS = {"MOT15": ["PETS09-S2L1", "TUD-Campus", "TUD-Stadtmitte"], "MOT17": ["MOT17-02-FRCNN", "MOT17-04-FRCNN"]}


def _sample(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_sequence(name)


@pytest.mark.parametrize("benchmark", list(GROUPS))
def test_agrees_with_trackeval_on_sample_sequences(tmp_path, benchmark):
    seqs = {n: _sample(n) for n in GROUPS[benchmark]}
    res = {n: _perturb(s.gt, k, s.width, s.height) for k, (n, s) in enumerate(seqs.items())}
    te = _trackeval(tmp_path, benchmark, {n: (s.path / "gt" / "gt.txt", res[n], s.num_frames) for n, s in seqs.items()})
    if benchmark == "MOT17":  # the perturbed output has boxes on distractors and flag-0 boxes: non-trivial preprocessing
        assert any(s.gt["cls"].isin([2, 7, 8, 12]).any() and (s.gt["conf"] == 0).any() for s in seqs.values())
    for backend in BACKENDS:
        # the files trackeval read, read back by our parser
        back = {n: read_mot_txt(tmp_path / "trk" / "t" / "data" / f"{n}.txt", "results") for n in seqs}
        out = evaluate_sequences(seqs, back, backend=backend)
        for n in seqs:
            assert 0 < te[n]["CLEAR"]["IDSW"] and 0 < te[n]["CLEAR"]["CLR_FP"] and 0 < te[n]["CLEAR"]["MOTA"] < 1
            mm_tol = backend == "motmetrics"
            tol = _mm_clear_tol(out["per_sequence"][n]["num_gt"]) if mm_tol else None
            _assert_agree(out["per_sequence"][n], _te_summary(te[n]), f"{backend}/{n}", tol)
        tol = _mm_clear_tol(out["num_gt"]) if mm_tol else None
        _assert_agree(out, _te_summary(te["COMBINED_SEQ"]), f"{backend}/combined", tol)


def test_half_split_frames_agree_with_trackeval(tmp_path):
    seq = _sample("TUD-Stadtmitte")
    res = _perturb(seq.gt, 5, seq.width, seq.height)
    _, val = half_split(seq)
    ours = evaluate_sequence(seq.gt, res, benchmark="MOT15", frames=val)
    # oracle: the validation half alone, renumbered from 1, as its own sequence in trackeval
    off = val.start - 1
    gt_v = read_mot_txt(seq.path / "gt" / "gt.txt", "gt")
    gt_v = gt_v[gt_v["frame"] > off].assign(frame=lambda d: d["frame"] - off)
    gt_file = tmp_path / "gt_val.txt"
    gt_file.write_text("".join(f"{r.frame},{r.id},{r.x!r},{r.y!r},{r.w!r},{r.h!r},{r.conf!r},-1,-1,-1\n"
                               for r in gt_v.itertuples()))
    res_v = res[res["frame"] > off].assign(frame=lambda d: d["frame"] - off)
    te = _trackeval(tmp_path / "te", "MOT15", {"val": (gt_file, res_v, len(val))})
    _assert_agree(ours, _te_summary(te["val"]), "val half")
    assert ours["num_frames"] == len(val) and ours["num_gt"] == int((seq.gt["frame"] > off).sum())
    # the tracker's first-half rows are ignored, not counted as FPs
    assert evaluate_sequence(seq.gt, res[res["frame"] > off], benchmark="MOT15", frames=val) == ours


def test_mot17_distractor_matching_at_iou_just_below_at_and_above_one_half(tmp_path):
    # MOT17 deletes a tracker box that TrackEval's preprocessing Hungarian-matches to a distractor at IoU >= 0.5
    # (mot_challenge_2d_box.py: similarity >= 0.5 - eps, a match over *all* GT boxes). Distractor D (class 8,
    # static) is the box (0, 0, 10, 10); each frame's tracker box shares its top edge:
    #   frame 1: height 4.9 -> IoU 49 / 100 = 0.49: kept, an FP;   frame 2: height 5 -> IoU 0.5 exactly: deleted;
    #   frame 3: height 5.1 -> IoU 0.51: deleted;
    #   frame 4: pedestrian P (100, 0, 10, 20), distractor E (104, 0, 10, 20); tracker box T (101, 0, 10, 20) has
    #   IoU 180 / 220 = 0.818 with P and 140 / 260 = 0.538 with E, box U (104, 0, 10, 20) IoU 1 with E and
    #   120 / 280 = 0.43 with P. The joint matching gives T to P (a TP) and U to E (deleted); deleting every box
    #   over 0.5 with some distractor would lose T and turn P into an FN.
    # Hand count: TP 1, FN 0, FP 1 (frame 1 only).
    gt = _frame([(f, 1, 0, 0, 10, 10, 0, 8, 1.0) for f in (1, 2, 3)]
                + [(4, 2, 100, 0, 10, 20, 1, 1, 1.0), (4, 3, 104, 0, 10, 20, 0, 8, 1.0)])
    res = _frame([(1, 5, 0, 0, 10, 4.9, 1, -1, -1), (2, 5, 0, 0, 10, 5.0, 1, -1, -1), (3, 5, 0, 0, 10, 5.1, 1, -1, -1),
                  (4, 6, 101, 0, 10, 20, 1, -1, -1), (4, 7, 104, 0, 10, 20, 1, -1, -1)])
    np.testing.assert_allclose(box_iou(gt[["x", "y", "w", "h"]].to_numpy()[:3], res[["x", "y", "w", "h"]].to_numpy()[:3]
                                       ).diagonal(), [0.49, 0.5, 0.51])
    r = evaluate_sequence(gt, res, benchmark="MOT17")
    assert (r["num_gt"], r["tp"], r["fp"], r["fn"]) == (1, 1, 1, 0)
    assert [evaluate_sequence(gt, res, benchmark="MOT17", frames=[f])["fp"] for f in (1, 2, 3, 4)] == [1, 0, 0, 0]
    # MOT15 has no classes: with every flag set, every GT row is a pedestrian to find, matched at IoU >= 0.5 by
    # CLEAR itself: frames 2, 3 and both of frame 4 (TP 4), frame 1's 0.49 is a miss and an FP
    r15 = evaluate_sequence(gt.assign(conf=1), res, benchmark="MOT15")
    assert (r15["num_gt"], r15["tp"], r15["fp"], r15["fn"]) == (5, 4, 1, 1)
    # the oracle: TrackEval's own MotChallenge2DBox preprocessing and CLEAR on the same files
    gt_file = tmp_path / "gt.txt"
    gt_file.write_text("".join(f"{r.frame},{r.id},{r.x!r},{r.y!r},{r.w!r},{r.h!r},{r.conf},{r.cls},{r.vis}\n"
                               for r in gt.itertuples()))
    te = _trackeval(tmp_path / "te", "MOT17", {"d": (gt_file, res.drop(columns=["cls", "vis"]), 4)})["d"]["CLEAR"]
    assert (te["CLR_TP"], te["CLR_FP"], te["CLR_FN"]) == (r["tp"], r["fp"], r["fn"])
