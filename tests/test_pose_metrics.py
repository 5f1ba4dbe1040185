"""MPJPE family against hand-worked numbers and scipy's rotation fitting (an independent solver)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from passbench.metrics import pose as P


def _skeleton(rng: np.random.Generator, n: int = 4, j: int = 17) -> np.ndarray:
    return rng.normal(0.0, 300.0, size=(n, j, 3))  # (N, J, 3) mm, non-planar


def test_hand_worked_two_joint_example():
    # gt joints (-1,0,0), (1,0,0); pred (0,-2,0), (0,2,0)   [mm]
    # MPJPE: each joint is sqrt(1^2 + 2^2) = sqrt(5) = 2.2360... away.
    # PA (rotation+translation, no scale): rotate pred by 90 deg -> (-2,0,0), (2,0,0); each joint 1 mm off.
    # P-MPJPE (with scale 1/2): pred maps exactly onto gt -> 0.
    # N-MPJPE: s = sum(P.G)/sum(P.P) = 0/8 = 0 -> pred collapses to the origin; each joint 1 mm off.
    gt = np.array([[[-1.0, 0, 0], [1.0, 0, 0]]])
    pred = np.array([[[0.0, -2, 0], [0.0, 2, 0]]])
    assert P.mpjpe(pred, gt).mean == pytest.approx(np.sqrt(5.0))
    assert P.pa_mpjpe(pred, gt).mean == pytest.approx(1.0)
    assert P.p_mpjpe(pred, gt).mean == pytest.approx(0.0, abs=1e-9)
    assert P.n_mpjpe(pred, gt).mean == pytest.approx(1.0)


def test_per_sample_and_mean_shapes_and_values():
    # sample 0: joint errors 0 and 5 (3-4-5 triangle) -> 2.5; sample 1: errors 1 and 1 -> 1.0; mean 1.75
    gt = np.zeros((2, 2, 3))
    pred = np.array([[[0, 0, 0], [3, 4, 0]], [[1, 0, 0], [0, 0, 1]]], dtype=float)
    e = P.mpjpe(pred, gt)
    np.testing.assert_allclose(e.per_joint, [[0, 5], [1, 1]])
    np.testing.assert_allclose(e.per_sample, [2.5, 1.0])
    assert e.mean == pytest.approx(1.75)


def test_known_rotation_pa_zero_mpjpe_positive():
    rng = np.random.default_rng(0)
    gt = _skeleton(rng)
    rot = Rotation.from_euler("xyz", [30, -20, 50], degrees=True).as_matrix()
    pred = gt @ rot.T + np.array([10.0, -5.0, 3.0])
    assert P.mpjpe(pred, gt).mean > 50
    assert P.pa_mpjpe(pred, gt).mean == pytest.approx(0.0, abs=1e-8)
    assert P.p_mpjpe(pred, gt).mean == pytest.approx(0.0, abs=1e-8)


def test_known_scale_p_zero_but_pa_positive():
    rng = np.random.default_rng(1)
    gt = _skeleton(rng)
    pred = 1.3 * gt  # scale about the origin, plus a rotation to make it non-trivial
    pred = pred @ Rotation.from_euler("z", 40, degrees=True).as_matrix().T
    assert P.p_mpjpe(pred, gt).mean == pytest.approx(0.0, abs=1e-8)
    assert P.pa_mpjpe(pred, gt).mean > 10  # rotation-only alignment cannot undo a 30 % scale
    # n_mpjpe only fixes scale; with the rotation present it stays > 0, without it is 0
    assert P.n_mpjpe(1.3 * gt, gt).mean == pytest.approx(0.0, abs=1e-8)


def test_translation():
    rng = np.random.default_rng(2)
    gt = _skeleton(rng)
    pred = gt + np.array([100.0, 0.0, 0.0])
    np.testing.assert_allclose(P.mpjpe(pred, gt).per_joint, 100.0)
    assert P.pa_mpjpe(pred, gt).mean == pytest.approx(0.0, abs=1e-8)
    assert P.mpjpe(P.root_align(pred), P.root_align(gt)).mean == pytest.approx(0.0, abs=1e-9)


def test_reflection_is_not_used_by_rotation_only_alignment():
    rng = np.random.default_rng(3)
    gt = _skeleton(rng, n=3)
    mirror = gt * np.array([-1.0, 1.0, 1.0])  # a reflection: no proper rotation maps it back
    # An unconstrained orthogonal fit (scipy, reflections allowed) would reach 0; ours must not.
    from scipy.linalg import orthogonal_procrustes

    c_p = mirror[0] - mirror[0].mean(0)
    c_g = gt[0] - gt[0].mean(0)
    q, _ = orthogonal_procrustes(c_p, c_g)
    assert np.linalg.det(q) < 0 and np.abs(c_p @ q - c_g).max() < 1e-8
    pa = P.pa_mpjpe(mirror, gt).mean
    assert pa > 10
    for i in range(3):
        r, _ = P.rigid_transform_3d(mirror[i], gt[i])
        assert np.linalg.det(r) == pytest.approx(1.0)
    assert P.p_mpjpe(mirror, gt).mean > 10


def _kabsch_oracle(pred: np.ndarray, gt: np.ndarray, scale: bool) -> np.ndarray:
    """Independent solution: scipy's proper-rotation fit, then the least-squares scale for that R."""
    out = []
    for p, g in zip(pred, gt):
        pc, gc = p - p.mean(0), g - g.mean(0)
        rot, _ = Rotation.align_vectors(gc, pc)  # minimises sum ||gc - R pc||^2 over rotations
        rp = rot.apply(pc)
        s = (rp * gc).sum() / (rp * rp).sum() if scale else 1.0
        out.append(np.linalg.norm(s * rp - gc, axis=-1).mean())
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_p_and_pa_match_scipy_oracle_on_noisy_poses(seed):
    rng = np.random.default_rng(seed)
    gt = _skeleton(rng, n=6)
    rot = Rotation.random(6, random_state=seed).as_matrix()
    pred = 0.8 * np.einsum("nij,nkj->nki", rot, gt) + rng.normal(0, 40.0, size=gt.shape) + 7.0
    np.testing.assert_allclose(P.p_mpjpe(pred, gt).per_sample, _kabsch_oracle(pred, gt, scale=True), rtol=1e-7)
    np.testing.assert_allclose(P.pa_mpjpe(pred, gt).per_sample, _kabsch_oracle(pred, gt, scale=False), rtol=1e-7)


def test_reflected_prediction_matches_oracle():
    # det(R) < 0 branch: VideoPose3D flips V's last column AND the last singular value (the scale).
    rng = np.random.default_rng(7)
    gt = _skeleton(rng, n=5)
    pred = 0.9 * gt * np.array([1.0, -1.0, 1.0]) + rng.normal(0, 10.0, size=gt.shape)
    np.testing.assert_allclose(P.p_mpjpe(pred, gt).per_sample, _kabsch_oracle(pred, gt, scale=True), rtol=1e-7)
    np.testing.assert_allclose(P.pa_mpjpe(pred, gt).per_sample, _kabsch_oracle(pred, gt, scale=False), rtol=1e-7)


def test_torch_input_and_shape_errors():
    torch = pytest.importorskip("torch")
    gt = torch.zeros(2, 17, 3)
    assert P.mpjpe(gt + 1.0, gt).mean == pytest.approx(np.sqrt(3.0))
    with pytest.raises(ValueError, match=r"\(N, J, 3\)"):
        P.mpjpe(np.zeros((17, 3)), np.zeros((17, 3)))
    with pytest.raises(ValueError, match="differ in shape"):
        P.mpjpe(np.zeros((1, 17, 3)), np.zeros((1, 16, 3)))


def test_aggregation_frame_weighted_vs_mean_of_actions():
    # action A: 3 samples with error 1 mm on both joints; action B: 1 sample with error 5 mm.
    # frame-weighted: (3*2*1 + 1*2*5) / 8 = 16/8 = 2.0 ; mean of per-action means: (1 + 5) / 2 = 3.0
    err = np.array([[1, 1], [1, 1], [1, 1], [5, 5]], dtype=float)
    groups = ["A", "A", "A", "B"]
    fw = P.aggregate(err, groups, how="frame")
    am = P.aggregate(err, groups, how="action")
    assert fw.overall == pytest.approx(2.0) and fw.aggregation == P.FRAME_WEIGHTED
    assert am.overall == pytest.approx(3.0) and am.aggregation == P.MEAN_OF_ACTIONS
    assert fw.per_group == {"A": 1.0, "B": 5.0} and fw.counts == {"A": 3, "B": 1}
    with pytest.raises(ValueError, match="labels"):
        P.aggregate(err, groups[:3])


def test_similarity_fit_is_per_sample_and_about_each_centroid():
    # Each sample its own size, scale, rotation and a centroid far from the origin (5 m in z): a prediction that
    # is an exact similarity transform of the gt scores 0 under p_mpjpe, but only when each sample is centred on
    # its own centroid and normalised by its own norm (one norm over the batch, or a centroid added instead of
    # subtracted, leaves mm-sized errors). The 3DMPPE rigid fit scores the scale error alone.
    rng = np.random.default_rng(11)
    sizes = np.array([0.5, 1.0, 3.0])[:, None, None]
    gt = sizes * _skeleton(rng, n=3) + np.array([200.0, -100.0, 5000.0])
    rot = Rotation.random(3, random_state=5).as_matrix()
    scale = np.array([0.7, 1.0, 1.6])[:, None, None]
    pred = scale * np.einsum("nij,nkj->nki", rot, gt) + np.array([[[30.0, 0.0, -80.0]], [[0.0, 0.0, 0.0]],
                                                                   [[-500.0, 60.0, 900.0]]])
    np.testing.assert_allclose(P.p_mpjpe(pred, gt).per_joint, 0.0, atol=1e-8)
    np.testing.assert_allclose(P.procrustes_align(pred, gt), gt, atol=1e-8)
    np.testing.assert_allclose(P.pa_mpjpe(pred, gt).per_sample, _kabsch_oracle(pred, gt, scale=False), rtol=1e-9,
                               atol=1e-9)
    assert P.pa_mpjpe(pred, gt).per_sample[1] == pytest.approx(0.0, abs=1e-8)  # scale 1: a rigid motion
    # float32 input is computed in float64: the exact transform still scores 0 to 1e-9 mm
    p32, g32 = pred.astype(np.float32), gt.astype(np.float32)
    assert P.p_mpjpe(p32, g32).per_joint.max() < 1e-3 and P.p_mpjpe(p32, g32).per_joint.dtype == np.float64
    want = P.p_mpjpe(p32.astype(np.float64), g32.astype(np.float64)).per_joint
    np.testing.assert_array_equal(P.p_mpjpe(p32, g32).per_joint, want)


def test_each_metric_names_itself_and_the_degenerate_inputs_say_why():
    rng = np.random.default_rng(12)
    gt = _skeleton(rng, n=2)
    pred = gt + rng.normal(0, 20.0, gt.shape)
    for name, fn in P.METRICS.items():
        assert fn(pred, gt).metric == name
    # a prediction (or gt) with every joint at one point has no scale to fit
    point = np.broadcast_to(gt[:, :1], gt.shape).copy()
    for p, g in ((point, gt), (gt, point)):
        with pytest.raises(ValueError, match=r"^p_mpjpe: a sample has all joints at one point \(zero norm\); scale "
                                             r"is undefined$"):
            P.p_mpjpe(p, g)
    with pytest.raises(ValueError, match=r"^n_mpjpe: a prediction is all zeros; scale is undefined$"):
        P.n_mpjpe(np.zeros_like(gt), gt)
    # which argument is bad is named
    bad = gt.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"^pred: contains NaN or inf$"):
        P.mpjpe(bad, gt)
    with pytest.raises(ValueError, match=r"^gt: contains NaN or inf$"):
        P.mpjpe(gt, bad)
    with pytest.raises(ValueError, match=r"^joints: expected shape \(N, J, 3\) in mm"):
        P.root_align(np.zeros((17, 3)))


def test_root_align_defaults_to_the_pelvis_and_empty_input_has_no_mean():
    import warnings

    rng = np.random.default_rng(13)
    j = _skeleton(rng, n=2)
    r = P.root_align(j)
    np.testing.assert_array_equal(r[:, 0], 0.0)  # joint 0 (Pelvis) is the default root
    np.testing.assert_allclose(r[:, 5], j[:, 5] - j[:, 0])
    empty = np.zeros((0, 17, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" on the way
        e = P.mpjpe(empty, empty)
    assert e.per_joint.shape == (0, 17) and np.isnan(e.mean)


def test_torch_input_that_requires_grad():
    torch = pytest.importorskip("torch")
    gt = torch.zeros(2, 17, 3)
    pred = (gt + 1.0).requires_grad_(True)
    assert P.mpjpe(pred, gt).mean == pytest.approx(np.sqrt(3.0))
    assert P.root_align(pred)[0, 3].tolist() == [0.0, 0.0, 0.0]


def test_aggregate_default_inputs_messages_and_dict():
    err = np.array([[1, 1], [1, 1], [1, 1], [5, 5]], dtype=float)
    groups = ["A", "A", "A", "B"]
    assert P.aggregate(err, groups).overall == pytest.approx(2.0)  # default: frame-weighted (3DMPPE tot_err)
    # a PoseErrors is read through its per-joint errors
    gt = np.zeros((4, 2, 3))
    pe = P.mpjpe(gt + np.array([0.0, 0.0, 1.0]) * err[:, :, None], gt)
    agg = P.aggregate(pe, groups, how="action")
    assert agg.overall == pytest.approx(3.0) and agg.counts == {"A": 3, "B": 1}
    assert agg.as_dict() == {"overall": agg.overall, "aggregation": P.MEAN_OF_ACTIONS,
                             "per_group": {"A": 1.0, "B": 5.0}, "counts": {"A": 3, "B": 1}}
    # float32 errors are averaged in float64 (Human3.6M sums ~10^6 of them)
    e32 = (np.random.default_rng(0).random((1000, 17)) * 100).astype(np.float32)
    assert P.aggregate(e32, ["A"] * 1000).overall == float(e32.astype(np.float64).mean())
    assert P.aggregate(err[:1], ["A"]).overall == 1.0  # one sample is enough
    with pytest.raises(ValueError, match=r"^aggregate: no samples$"):
        P.aggregate(np.zeros((0, 17)), [])
    with pytest.raises(ValueError, match=r"^errors: expected \(N, J\), got \(4,\)$"):
        P.aggregate(err[:, 0], groups)
    with pytest.raises(ValueError, match=r"^how='median': expected one of \['action', 'frame'\]$"):
        P.aggregate(err, groups, how="median")
