"""MOT metrics as the official MOTChallenge evaluator computes them (the only module importing
motmetrics / trackeval).

Pipeline per sequence (TrackEval ``trackeval/datasets/mot_challenge_2d_box.py``, REFERENCE.md 3.2):

1. IoU of every tracker box with every GT box per frame (``_BaseDataset._calculate_box_ious``,
   xywh, no +1 pixel convention).
2. Except for MOT15: Hungarian-match tracker boxes to **all** GT boxes at IoU >= 0.5 and delete
   tracker boxes matched to a distractor class {2 person_on_vehicle, 7 static_person,
   8 distractor, 12 reflection} (+ 6 non_mot_vehicle for MOT20).
3. Keep GT with class 1 and consider-flag != 0 (MOT15: flag != 0 only; it has no classes).
   Visibility is not used.
4. CLEAR (MOTA, MOTP, IDSW, MT/ML, Frag) and Identity (IDF1/IDP/IDR) at ``iou`` (0.5), HOTA over
   alpha = 0.05..0.95 (``metrics/clear.py``, ``identity.py``, ``hota.py``).

Several sequences combine the TrackEval way: sum the counts over sequences, then form the ratios
(``combine_sequences``), never an average of per-sequence ratios.

Backends (same preprocessed data for both):

* ``"trackeval"`` (default): trackeval 1.3.0's metric classes (the NumPy-2 fork of the official
  evaluator) for everything.
* ``"motmetrics"``: py-motmetrics 1.4.0 for CLEAR and Identity counts, trackeval for HOTA.
  motmetrics 1.4.0's ``distances.iou_matrix`` calls ``np.asfarray``, removed in NumPy 2. Rather than
  patching NumPy (a global side effect on every other module), we compute the IoU matrix ourselves,
  with TrackEval's formula, and hand motmetrics the distance matrix ``1 - IoU`` (NaN = no match
  possible), as ``MOTAccumulator.update`` accepts.
  Deviation (why ``"trackeval"`` is the default): the two libraries match frames differently.
  TrackEval (``clear.py``) gives a 1000 bonus in its Hungarian score only to the tracker a GT was
  matched to at the *immediately previous* timestep; motmetrics (``mot.py::update``) first
  re-establishes a GT's *last ever* match, even across frames where it was missed. After a gap they
  can pick different pairs, so IDSW / FP / FN / MOTA / MOTP / Frag may differ slightly (measured on
  perturbed PETS09-S2L1: MOTA 0.7534 vs 0.7538, IDSW 4 vs 0). motmetrics also counts MT at a covered
  ratio >= 0.8 where TrackEval uses > 0.8. Identity (IDF1/IDP/IDR) is a global assignment and
  agrees exactly (motmetrics gets Identity's own threshold test, IoU >= threshold without CLEAR's
  eps; tested on a pair at IoU 1/2 that float64 puts just below it); HOTA is always trackeval's. Both reproduce motmetrics' own TUD numbers.

MOTP is reported as TrackEval does: the mean IoU of matched pairs (higher is better), i.e.
``1 - motmetrics.motp``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from passbench.metrics.mot_backends import BACKENDS  # noqa: F401 - re-exported

DISTRACTOR_CLASSES = (2, 7, 8, 12)  # person_on_vehicle, static_person, distractor, reflection
MOT20_EXTRA_DISTRACTORS = (6,)  # non_mot_vehicle
VALID_GT_CLASSES = tuple(range(1, 14))  # 1 pedestrian .. 13 crowd (mot_challenge_2d_box.py)
BENCHMARKS = ("MOT15", "MOT16", "MOT17", "MOT20")
KEYS = ("mota", "motp", "idf1", "idp", "idr", "idsw", "fp", "fn", "mt", "ml", "frag", "hota", "deta", "assa",
        "num_gt", "num_frames")
_EPS = np.finfo("float").eps


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` (N, 4) and ``b`` (M, 4), both ``x, y, w, h`` in pixels -> (N, M).

    Same arithmetic as TrackEval ``_BaseDataset._calculate_box_ious(box_format='xywh')``, including
    its handling of empty boxes (IoU 0), so that threshold decisions match it bit for bit.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4).copy()
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4).copy()
    a[:, 2:] += a[:, :2]  # (N, 4) x0 y0 x1 y1
    b[:, 2:] += b[:, :2]
    mn = np.minimum(a[:, None, :], b[None, :, :])  # (N, M, 4)
    mx = np.maximum(a[:, None, :], b[None, :, :])
    inter = np.maximum(mn[..., 2] - mx[..., 0], 0) * np.maximum(mn[..., 3] - mx[..., 1], 0)  # (N, M)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    inter[area_a <= _EPS, :] = 0
    inter[:, area_b <= _EPS] = 0
    inter[union <= _EPS] = 0
    union[union <= _EPS] = 1
    return inter / union


def _columns(df: pd.DataFrame, what: str) -> dict[str, np.ndarray]:
    """frame, id, box (N, 4), flag, cls as arrays; gt without conf/cls counts as considered pedestrians."""
    missing = [c for c in ("frame", "id", "x", "y", "w", "h") if c not in df.columns]
    if missing:
        raise ValueError(f"{what} table lacks columns {missing} (has {list(df.columns)})")
    n = len(df)
    out = {"frame": df["frame"].to_numpy(np.int64), "id": df["id"].to_numpy(np.int64),
           "box": df[["x", "y", "w", "h"]].to_numpy(np.float64)}
    # TrackEval reads the flag as int(column 6) (``zero_marked``) and the class from column 7.
    out["flag"] = df["conf"].to_numpy(np.float64).astype(np.int64) if "conf" in df.columns else np.ones(n, np.int64)
    out["cls"] = df["cls"].to_numpy(np.int64) if "cls" in df.columns else np.full(n, -1 if what == "results" else 1)
    return out


def _split_by_frame(cols: dict[str, np.ndarray], frame_list: np.ndarray) -> list[dict[str, np.ndarray]]:
    order = np.argsort(cols["frame"], kind="stable")
    f = cols["frame"][order]
    lo, hi = np.searchsorted(f, frame_list, "left"), np.searchsorted(f, frame_list, "right")
    return [{k: v[order[a:b]] for k, v in cols.items()} for a, b in zip(lo, hi)]


def preprocess(gt: pd.DataFrame, results: pd.DataFrame, *, benchmark: str = "MOT17",
               frames: Iterable[int] | None = None) -> dict[str, Any]:
    """MOTChallenge preprocessing into TrackEval's per-sequence data dict.

    Args:
        gt: ground truth, columns ``frame, id, x, y, w, h`` and, for MOT16/17/20, ``conf`` (the
            consider flag) and ``cls``; boxes in pixels. (``passbench.datasets.motio`` tables fit.)
        results: tracker output, columns ``frame, id, x, y, w, h`` (``conf``, ``cls`` optional).
        benchmark: ``MOT15`` (no class preprocessing), ``MOT16``, ``MOT17`` or ``MOT20``.
        frames: 1-based frames to evaluate (e.g. a half split range); rows of *both* tables outside
            are dropped. None = frames 1..max frame of either table.

    Returns:
        TrackEval data dict: ``num_timesteps, num_gt_ids, num_tracker_ids, num_gt_dets,
        num_tracker_dets, gt_ids, tracker_ids, similarity_scores`` (lists over timesteps).

    Raises:
        ValueError: unknown benchmark, an id twice in one frame, a tracker class > 1, or (with class
            preprocessing) a GT class outside 1..13 -- the checks TrackEval makes.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    g, r = _columns(gt, "gt"), _columns(results, "results")
    if frames is None:
        last = int(max(g["frame"].max(initial=0), r["frame"].max(initial=0), 1))
        frame_list = np.arange(1, last + 1)
    else:
        frame_list = np.array(sorted(set(int(f) for f in frames)), dtype=np.int64)
        if len(frame_list) == 0:
            raise ValueError("frames is empty")
    distractors = DISTRACTOR_CLASSES + (MOT20_EXTRA_DISTRACTORS if benchmark == "MOT20" else ())
    do_preproc = benchmark != "MOT15"  # TrackEval never preprocesses MOT15
    data: dict[str, Any] = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for frame, gf, rf in zip(frame_list, _split_by_frame(g, frame_list), _split_by_frame(r, frame_list)):
        for what, ids in (("gt", gf["id"]), ("results", rf["id"])):
            if len(np.unique(ids)) != len(ids):  # TrackEval ``_check_unique_ids``
                raise ValueError(f"{what}: an id appears twice in frame {frame}")
        if len(rf["cls"]) and rf["cls"].max() > 1:
            raise ValueError(f"results: class {rf['cls'].max()} in frame {frame}; MOTChallenge evaluates only "
                             "pedestrians (class column must be -1 or 1)")
        sim = box_iou(gf["box"], rf["box"])  # (G, T)
        keep_trk = np.ones(len(rf["id"]), bool)
        if do_preproc and len(gf["id"]) and len(rf["id"]):
            bad = np.setdiff1d(np.unique(gf["cls"]), VALID_GT_CLASSES)
            if len(bad):
                raise ValueError(f"gt: invalid classes {bad.tolist()} in frame {frame}")
            score = sim.copy()
            score[score < 0.5 - _EPS] = 0
            rows, cols = linear_sum_assignment(-score)
            ok = score[rows, cols] > 0 + _EPS
            rows, cols = rows[ok], cols[ok]
            keep_trk[cols[np.isin(gf["cls"][rows], distractors)]] = False
        keep_gt = gf["flag"] != 0
        if do_preproc:
            keep_gt &= gf["cls"] == 1
        data["gt_ids"].append(gf["id"][keep_gt])
        data["tracker_ids"].append(rf["id"][keep_trk])
        data["similarity_scores"].append(sim[keep_gt][:, keep_trk])
    for key, nk in (("gt_ids", "num_gt_ids"), ("tracker_ids", "num_tracker_ids")):
        uniq = np.unique(np.concatenate(data[key])) if data[key] else np.empty(0, np.int64)
        data[key] = [np.searchsorted(uniq, ids).astype(int) for ids in data[key]]  # contiguous 0..K-1
        data[nk] = len(uniq)
    data["num_gt_dets"] = int(sum(len(x) for x in data["gt_ids"]))
    data["num_tracker_dets"] = int(sum(len(x) for x in data["tracker_ids"]))
    data["num_timesteps"] = len(frame_list)
    return data


def _metric_objects(iou: float) -> dict[str, Any]:
    from trackeval.metrics import CLEAR, HOTA, Identity  # noqa: PLC0415 - heavy import on first use

    cfg = {"THRESHOLD": float(iou), "PRINT_CONFIG": False}
    return {"clear": CLEAR(cfg), "identity": Identity(cfg), "hota": HOTA({"PRINT_CONFIG": False})}


def _motmetrics_counts(data: dict[str, Any], iou: float) -> tuple[dict[str, float], dict[str, float]]:
    """CLEAR / Identity counts from py-motmetrics, in TrackEval's field names."""
    import motmetrics as mm  # noqa: PLC0415

    def accumulate(floor: float) -> Any:
        acc = mm.MOTAccumulator(auto_id=True)
        for g, t, s in zip(data["gt_ids"], data["tracker_ids"], data["similarity_scores"]):
            # Our own IoU (motmetrics 1.4.0's iou_matrix needs np.asfarray, gone in NumPy 2): distance 1 - IoU,
            # NaN where the pair may not match
            acc.update(g.tolist(), t.tolist(), np.where(s >= floor, 1.0 - s, np.nan))
        return acc

    # TrackEval's CLEAR matches at similarity >= threshold - eps (clear.py), its Identity at >= threshold
    # (identity.py). motmetrics derives both from one accumulator, so a pair in [threshold - eps, threshold)
    # (an IoU of exactly 1/2 is often 0.49999999999999983 in float64) gets an accumulator of its own for Identity.
    acc = accumulate(iou - _EPS)
    edge = any(((s >= iou - _EPS) & (s < iou)).any() for s in data["similarity_scores"])
    acc_id = accumulate(iou) if edge else acc
    names = ["num_detections", "num_false_positives", "num_misses", "num_switches", "num_fragmentations",
             "mostly_tracked", "partially_tracked", "mostly_lost", "motp"]
    m = mm.metrics.create().compute(acc, metrics=names, return_dataframe=False)
    m.update(mm.metrics.create().compute(acc_id, metrics=["idtp", "idfn", "idfp"], return_dataframe=False))
    tp = int(m["num_detections"])
    motp_dist = float(m["motp"]) if tp else 0.0
    clear = {"CLR_TP": tp, "CLR_FN": int(m["num_misses"]), "CLR_FP": int(m["num_false_positives"]),
             "IDSW": int(m["num_switches"]), "MT": int(m["mostly_tracked"]), "PT": int(m["partially_tracked"]),
             "ML": int(m["mostly_lost"]), "Frag": int(m["num_fragmentations"]),
             "CLR_Frames": data["num_timesteps"], "MOTP_sum": tp * (1.0 - motp_dist)}
    ident = {"IDTP": int(m["idtp"]), "IDFN": int(m["idfn"]), "IDFP": int(m["idfp"])}
    return clear, ident


def _raw(data: dict[str, Any], iou: float, backend: str, metrics: dict[str, Any]) -> dict[str, dict]:
    """Per-sequence TrackEval-format results ``{clear, identity, hota}``."""
    hota = metrics["hota"].eval_sequence(data)
    if backend == "trackeval":
        clear = metrics["clear"].eval_sequence(data)
        # CLEAR returns early without setting CLR_Frames when there are no tracker or no GT boxes
        clear["CLR_Frames"] = data["num_timesteps"]
        return {"clear": clear, "identity": metrics["identity"].eval_sequence(data), "hota": hota}
    clear, ident = _motmetrics_counts(data, iou)
    # Derived ratios from the counts with TrackEval's own formulas (``_compute_final_fields``).
    return {"clear": metrics["clear"]._compute_final_fields(clear),
            "identity": metrics["identity"]._compute_final_fields(ident), "hota": hota}


def _summary(raw: dict[str, dict]) -> dict[str, Any]:
    c, i, h = raw["clear"], raw["identity"], raw["hota"]
    return {"mota": float(c["MOTA"]), "motp": float(c["MOTP"]), "idf1": float(i["IDF1"]), "idp": float(i["IDP"]),
            "idr": float(i["IDR"]), "idsw": int(c["IDSW"]), "fp": int(c["CLR_FP"]), "fn": int(c["CLR_FN"]),
            "mt": int(c["MT"]), "ml": int(c["ML"]), "pt": int(c["PT"]), "frag": int(c["Frag"]),
            "hota": float(np.mean(h["HOTA"])), "deta": float(np.mean(h["DetA"])), "assa": float(np.mean(h["AssA"])),
            "loca": float(np.mean(h["LocA"])), "recall": float(c["CLR_Re"]), "precision": float(c["CLR_Pr"]),
            "tp": int(c["CLR_TP"]), "num_gt": int(c["CLR_TP"] + c["CLR_FN"]), "num_frames": int(c["CLR_Frames"])}


def _check(backend: str, iou: float) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], got {iou}")


def evaluate_sequence(gt: pd.DataFrame, results: pd.DataFrame, *, benchmark: str = "MOT17", iou: float = 0.5,
                      frames: Iterable[int] | None = None, backend: str = "trackeval") -> dict[str, Any]:
    """MOTChallenge metrics of one sequence.

    Args:
        gt, results, benchmark, frames: see :func:`preprocess`.
        iou: CLEAR / Identity match threshold (the distractor matching stays at 0.5, as TrackEval).
        backend: ``"trackeval"`` or ``"motmetrics"`` (module docstring).

    Returns:
        ``mota, motp, idf1, idp, idr, hota, deta, assa, loca, recall, precision`` as fractions
        (MOTA may be negative) and ``idsw, fp, fn, mt, ml, pt, frag, tp, num_gt, num_frames`` as int.
    """
    _check(backend, iou)
    data = preprocess(gt, results, benchmark=benchmark, frames=frames)
    return _summary(_raw(data, iou, backend, _metric_objects(iou)))


def _items(items: Any, results: Mapping[str, pd.DataFrame] | None,
           frames: Any) -> list[tuple[str, pd.DataFrame, pd.DataFrame, str, Any]]:
    """Normalise the accepted inputs to ``(name, gt, results, benchmark, frames)`` tuples."""
    def frames_for(name: str, own: Any = None) -> Any:
        if own is not None:
            return own
        return frames.get(name) if isinstance(frames, Mapping) else frames

    out = []
    if isinstance(items, Mapping):
        for name, v in items.items():
            if isinstance(v, tuple):
                gt, res, bench, *rest = v
                out.append((str(name), gt, res, bench, frames_for(name, rest[0] if rest else None)))
            else:  # a sequence object (``passbench.datasets.mot.MOTSequence``): ``.gt`` + ``.benchmark``
                if results is None or name not in results:
                    raise KeyError(f"no results for sequence {name!r}")
                if v.gt is None:
                    raise ValueError(f"sequence {name!r} has no ground truth")
                out.append((str(name), v.gt, results[name], v.benchmark, frames_for(name)))
        return out
    for k, v in enumerate(items):
        gt, res, bench, *rest = v
        out.append((f"seq{k}", gt, res, bench, frames_for(f"seq{k}", rest[0] if rest else None)))
    return out


def evaluate_sequences(items: Sequence[tuple] | Mapping[str, Any], results: Mapping[str, pd.DataFrame] | None = None,
                       *, iou: float = 0.5, iou_threshold: float | None = None, backend: str = "trackeval",
                       frames: Any = None) -> dict[str, Any]:
    """Metrics over several sequences, combined as TrackEval does (sum counts, then ratios).

    Args:
        items: a list of ``(gt, results, benchmark)`` or ``(gt, results, benchmark, frames)``;
            or a mapping ``name -> such a tuple``; or a mapping ``name -> sequence`` (objects with
            ``.gt`` and ``.benchmark``) together with ``results`` ``name -> DataFrame``.
        results: tracker outputs by sequence name (only with a mapping of sequences).
        iou: CLEAR / Identity threshold; ``iou_threshold`` is an alias (the config's name).
        backend: ``"trackeval"`` or ``"motmetrics"``.
        frames: frames to evaluate for every sequence, or a mapping ``name -> frames``; a tuple's own
            fourth element wins. Rows of gt *and* results outside are dropped.

    Returns:
        The combined metrics (keys of :func:`evaluate_sequence`) plus ``per_sequence``:
        ``{name: metrics}`` (list input: names ``seq0, seq1, ...``).
    """
    iou = float(iou_threshold) if iou_threshold is not None else float(iou)
    _check(backend, iou)
    metrics = _metric_objects(iou)
    raws: dict[str, dict] = {}
    for name, gt, res, bench, fr in _items(items, results, frames):
        raws[name] = _raw(preprocess(gt, res, benchmark=bench, frames=fr), iou, backend, metrics)
    if not raws:
        raise ValueError("evaluate_sequences: no sequences given")
    combined = {k: metrics[k].combine_sequences({n: r[k] for n, r in raws.items()}) for k in metrics}
    out = _summary(combined)
    out["per_sequence"] = {n: _summary(r) for n, r in raws.items()}
    return out
