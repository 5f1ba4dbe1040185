"""passbench.pose: crop, decode, evaluate and training targets against hand-worked examples, OpenCV's
affine solver and warp (independent implementations), the loader's camera, and round trips (ground
truth encoded as a perfect prediction scores 0 mm)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from passbench.datasets import h36m as H
from passbench.datasets import synthetic_h36m as G
from passbench.pose.crop import apply_affine, crop_affine, crop_image, to_input
from passbench.pose.decode import MapSpec, flip_coords, predict, to_camera, to_image
from passbench.pose.evaluate import PredictionError, evaluate, joint_errors
from passbench.pose.targets import coord_l1_loss, coord_targets

MHP = MapSpec((256, 256), (32, 32), 32)  # mhp_lpski
POSENET = MapSpec((256, 256), (64, 64), 64)  # posenet_r50, mhp_lpwo, mhp_lpres
VNECT = MapSpec((368, 368), (46, 46), 64)  # vnect


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose_syn")
    # Discussion (indoor, fixed camera) and Walking (outdoor, moving camera); 65 frames: scored 0 and 64.
    G.generate(root, subjects=(9, 11), actions=(3, 14), frames=65, cams=(1, 2), size=256)
    return root


def _frames(root, protocol="mhp-p2"):
    return list(H.Human36M(root, protocol).eval_frames())


def _encode(frames, spec, cam_joints=None, all_visible=True):
    """Camera-mm joints (default: the ground truth) -> the coords a perfect model would output."""
    out = []
    for i, fr in enumerate(frames):
        cam = fr.joints_cam if cam_joints is None else cam_joints[i]
        uvz = fr.camera.cam_to_pixel(cam)  # the loader's projection
        uvz[:, 2] -= fr.root_cam[2]
        box = H.process_bbox(fr.bbox, fr.width, fr.height, spec.input_hw)
        target, vis = coord_targets(uvz, box, spec)
        assert vis.all() or not all_visible
        out.append(target)
    return np.stack(out).astype(np.float64)


# ---------------------------------------------------------------------------------------------- crop


def _upstream_affine(cv2, bbox, input_hw, scale=1.0, rot=0.0, flip_width=None):
    """gen_trans_from_patch_cv's three point pairs, solved by cv2.getAffineTransform (the oracle)."""
    x, y, w, h = bbox
    cx, cy = x + 0.5 * w, y + 0.5 * h
    if flip_width is not None:
        cx = flip_width - cx - 1
    a = np.deg2rad(rot)
    rot2 = lambda p: np.array([p[0] * np.cos(a) - p[1] * np.sin(a), p[0] * np.sin(a) + p[1] * np.cos(a)])  # noqa: E731
    src = np.float32([[cx, cy], np.add([cx, cy], rot2([0, h * scale / 2])), np.add([cx, cy], rot2([w * scale / 2, 0]))])
    hi, wi = input_hw
    dst = np.float32([[wi / 2, hi / 2], [wi / 2, hi], [wi, hi / 2]])
    return cv2.getAffineTransform(src, dst)


def test_crop_affine_hand_example_and_opencv_oracle():
    cv2 = pytest.importorskip("cv2")
    a = crop_affine([100, 50, 200, 100], (256, 128))  # box 200x100 -> patch W 128, H 256
    # x_patch = (u - 100) * 128 / 200, y_patch = (v - 50) * 256 / 100
    np.testing.assert_allclose(apply_affine(a, [[100, 50], [300, 150], [200, 100]]), [[0, 0], [128, 256], [64, 128]],
                               atol=1e-9)
    for kw in (dict(), dict(scale=1.2, rot=30.0), dict(scale=0.8, rot=-12.0)):
        want = _upstream_affine(cv2, [37.5, 12.25, 140.0, 140.0], (256, 256), kw.get("scale", 1.0), kw.get("rot", 0.0))
        got = crop_affine([37.5, 12.25, 140.0, 140.0], (256, 256), kw.get("scale", 1.0), kw.get("rot", 0.0))
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_crop_image_puts_a_pixel_where_the_affine_says_and_flip_matches_upstream():
    cv2 = pytest.importorskip("cv2")
    img = np.zeros((240, 320, 3), np.uint8)
    img[100, 150] = (255, 0, 0)  # one red pixel at u=150, v=100
    box = [120.0, 60.0, 80.0, 80.0]
    patch = crop_image(img, box, (256, 256))
    (x, y), = apply_affine(crop_affine(box, (256, 256)), [[150, 100]])  # (96, 128)
    assert (x, y) == pytest.approx((96.0, 128.0))
    peak = np.unravel_index(patch[..., 0].argmax(), patch.shape[:2])
    assert abs(peak[0] - y) <= 2 and abs(peak[1] - x) <= 2
    # Flip: upstream mirrors the image, then crops around the mirrored centre.
    want = cv2.warpAffine(img[:, ::-1].copy(), _upstream_affine(cv2, box, (256, 256), flip_width=320), (256, 256),
                          flags=cv2.INTER_LINEAR)
    got = crop_image(img, box, (256, 256), flip=True)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    t = to_input([patch, got])
    assert t.shape == (2, 3, 256, 256) and t.dtype == torch.float32 and float(t.max()) <= 1.0


# ---------------------------------------------------------------------------------------------- decode


def test_to_image_and_back_projection_hand_example():
    # coords (16, 8, 16) in a 32x32x32 map; box [100, 50, 200, 200]; root Z 5000 mm:
    # u = 16/32*200 + 100 = 200, v = 8/32*200 + 50 = 100, Z = (16/32*2 - 1)*1000 + 5000 = 5000.
    uvz = to_image(np.array([[[16.0, 8.0, 16.0], [0.0, 0.0, 0.0]]]), np.array([[100.0, 50, 200, 200]]),
                   np.array([5000.0]), MHP)
    np.testing.assert_allclose(uvz, [[[200, 100, 5000], [100, 50, 4000]]])
    # f = 1000, c = 500: X = (200 - 500)/1000 * 5000 = -1500, Y = (100 - 500)/1000*5000 = -2000.
    cam = to_camera(uvz, np.array([[1000.0, 1000.0]]), np.array([[500.0, 500.0]]))
    np.testing.assert_allclose(cam[0, 0], [-1500, -2000, 5000])
    loader = H.Camera(np.eye(3), np.zeros(3), np.array([1000.0, 1000.0]), np.array([500.0, 500.0]))
    np.testing.assert_allclose(cam[0], loader.pixel_to_cam(uvz[0]))


def test_flip_coords_hand_example():
    c = np.zeros((1, 18, 3))
    c[0, 1] = (3.0, 5.0, 7.0)  # R_Hip
    c[0, 4] = (10.0, 1.0, 2.0)  # L_Hip
    c[0, 0] = (31.0, 0.0, 0.0)  # Pelvis: no partner
    f = flip_coords(c, 32)
    np.testing.assert_allclose(f[0, 4], (28.0, 5.0, 7.0))  # R_Hip's mirror becomes the L_Hip
    np.testing.assert_allclose(f[0, 1], (21.0, 1.0, 2.0))
    np.testing.assert_allclose(f[0, 0], (0.0, 0.0, 0.0))
    np.testing.assert_allclose(f[0, 17], (31.0, 0.0, 0.0))  # Thorax: x mirrored, no partner
    assert torch.equal(flip_coords(torch.tensor(c), 32), torch.tensor(f))


class _ArgmaxOfImage(nn.Module):
    """A fake pose model: every joint at the soft-argmax of the input's red channel (output = input grid)."""

    output_hw = (24, 40)

    def forward(self, x):
        b, _, h, w = x.shape
        p = torch.softmax(50 * x[:, 0].reshape(b, -1), 1).reshape(b, h, w)
        xs = (p.sum(1) * torch.arange(w)).sum(1)
        ys = (p.sum(2) * torch.arange(h)).sum(1)
        c = torch.stack([xs, ys, torch.zeros_like(xs)], -1)[:, None].expand(b, 18, 3)
        return {"coords": c}


def test_flip_test_of_a_mirror_equivariant_model_equals_the_plain_prediction():
    """x -> W_out - 1 - x is the exact inverse of mirroring the input (a W_out - x would be off by 1)."""
    x = torch.zeros(1, 3, 24, 40)
    x[0, 0, 7, 5] = 1.0
    m = _ArgmaxOfImage()
    plain, flipped = predict(m, x), predict(m, x, flip_test=True)
    assert plain[0, 0, 0] == pytest.approx(5.0, abs=1e-3)
    torch.testing.assert_close(flipped, plain)


# ---------------------------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("spec", [MHP, POSENET, VNECT], ids=["mhp", "posenet", "vnect"])
def test_round_trip_ground_truth_scores_zero(syn, spec):
    for proto in ("mhp-p2", "mhp-p1", "vp3d-p1", "vp3d-p2"):
        frames = _frames(syn, proto)
        r = evaluate(_encode(frames, spec), frames, proto, spec)
        # ~0: the targets are float32 as upstream's (a bin is 31-62 mm; float32 keeps ~1e-4 mm of it).
        assert r.value_mm < 1e-3 and r.frames == len(frames) and r.skipped_empty_box == 0, proto
    frames = _frames(syn)
    assert {fr.key.action for fr in frames} == {3, 14} and any(fr.camera is not frames[0].camera for fr in frames)


def test_known_offsets_per_action_thorax_excluded(syn):
    frames = _frames(syn)
    gt = np.stack([fr.joints_cam for fr in frames])  # (N, 18, 3)
    pred = gt.copy()
    walking = np.array([fr.key.action == 14 for fr in frames])
    pred[~walking, 1:17] += (3.0, 4.0, 0.0)  # 5 mm on the 16 non-root joints (Discussion)
    pred[walking, 1:17] += (6.0, 8.0, 0.0)  # 10 mm (Walking)
    pred[:, 17] += 1e4  # the Thorax is not scored (10 m away: outside the crop, its target is not even visible)
    r = evaluate(_encode(frames, POSENET, pred, all_visible=False), frames, "mhp-p2", POSENET)
    assert r.per_action["Discussion"] == pytest.approx(5.0 * 16 / 17, abs=1e-3)
    assert r.per_action["Walking"] == pytest.approx(10.0 * 16 / 17, abs=1e-3)
    n = r.counts
    assert n == {"Discussion": 8, "Walking": 8} and r.metric == "mpjpe" and r.protocol == "mhp-p2"
    assert r.value_mm == pytest.approx((5 * n["Discussion"] + 10 * n["Walking"]) / (n["Discussion"] + n["Walking"])
                                       * 16 / 17, abs=1e-3)
    m = r.as_metrics()
    assert m["mpjpe_mm"] == r.value_mm and m["per_action"]["Walking"]["frames"] == 8


def test_pa_mpjpe_removes_a_rotation_mpjpe_does_not(syn):
    frames = _frames(syn, "mhp-p1")  # S11 only
    gt = np.stack([fr.joints_cam for fr in frames])
    a = np.deg2rad(20.0)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rel = gt - gt[:, :1]
    pred = rel @ rot.T + gt[:, :1]  # rotated about the Pelvis
    coords = _encode(frames, POSENET, pred)
    assert evaluate(coords, frames, "mhp-p1", POSENET).value_mm < 1e-3
    want = np.linalg.norm(rel[:, :17] @ rot.T - rel[:, :17], axis=-1).mean()  # the oracle: plain numpy
    assert evaluate(coords, frames, "mhp-p2", POSENET).value_mm == pytest.approx(want, abs=1e-3)
    assert want > 50  # a 20 degree turn of a body is tens of mm: the test is not vacuous
    with pytest.raises(ValueError, match="not a Human3.6M protocol metric"):
        joint_errors(gt, gt, "n_mpjpe")


def test_joint_errors_hand_worked_root_centering_and_rigid_alignment_without_scale():
    # Camera-mm poses, no decoding: what each protocol does to a prediction, worked by hand.
    rng = np.random.default_rng(4)
    gt = rng.normal(0.0, 300.0, (3, 18, 3)) + np.array([0.0, 0.0, 5000.0])  # (N, 18, 3), 5 m from the camera
    ev = list(H.EVAL_JOINTS)
    # a whole-body translation (a root-depth error) costs nothing: prediction and gt are both root-centred
    for metric in ("mpjpe", "pa_mpjpe", "p_mpjpe"):
        np.testing.assert_allclose(joint_errors(gt + np.array([40.0, -30.0, 200.0]), gt, metric), 0.0, atol=1e-8)
    rel = gt - gt[:, H.ROOT:H.ROOT + 1]
    pred = gt[:, H.ROOT:H.ROOT + 1] + 1.2 * rel  # 1.2x too large about the pelvis
    # MPJPE: joint j is 0.2 |rel_j| off
    np.testing.assert_allclose(joint_errors(pred, gt, "mpjpe"), 0.2 * np.linalg.norm(rel[:, ev], axis=-1), rtol=1e-9)
    # 3DMPPE rigid_align (rotation + translation, no scale) on all 18 joints: the cross-covariance of a scaled
    # copy, 1.2 sum c c^T, is symmetric positive definite, so R = I and the translation moves the 18-joint
    # centroid m of rel onto itself: aligned_j = 1.2 rel_j - 0.2 m, error 0.2 |rel_j - m| (Thorax dropped after)
    m = rel.mean(1, keepdims=True)
    want = 0.2 * np.linalg.norm(rel - m, axis=-1)[:, ev]
    np.testing.assert_allclose(joint_errors(pred, gt, "pa_mpjpe"), want, rtol=1e-9)
    assert want.mean() > 20  # an alignment that also fitted the scale would score 0 here:
    np.testing.assert_allclose(joint_errors(pred, gt, "p_mpjpe"), 0.0, atol=1e-8)


def test_runner_scores_report_mpjpe_and_pa_mpjpe_as_worked_by_hand(syn):
    # The runner's wiring (passbench.runner.pose.Scores -> pose_metrics, what records hold): a prediction 1.2x
    # too large about the pelvis, decoded from model coords like a real run. mpjpe_mm = mean 0.2 |rel_j|;
    # pa_mpjpe_mm = mean 0.2 |rel_j - m| (3DMPPE rigid_align: R = I for a scaled copy, no scale fitted).
    from passbench.runner.pose import Scores, pose_metrics

    frames = _frames(syn)
    gt = np.stack([fr.joints_cam for fr in frames])
    rel = gt - gt[:, H.ROOT:H.ROOT + 1]
    pred = gt[:, H.ROOT:H.ROOT + 1] + 1.2 * rel
    scores = Scores()
    scores.add(_encode(frames, POSENET, pred), frames, POSENET, moving=False)
    m = pose_metrics(scores, no_box=0)
    ev = list(H.EVAL_JOINTS)
    want_mpjpe = 0.2 * np.linalg.norm(rel[:, ev], axis=-1).mean()
    want_pa = 0.2 * np.linalg.norm(rel - rel.mean(1, keepdims=True), axis=-1)[:, ev].mean()
    assert m["mpjpe_mm"] == pytest.approx(want_mpjpe, abs=1e-3) and m["pa_mpjpe_mm"] == pytest.approx(want_pa, abs=1e-3)
    assert want_pa > 10 and m["frames"] == len(frames)


def test_nan_prediction_names_the_file_and_field(syn):
    frames = _frames(syn)
    coords = _encode(frames, MHP)
    coords[3, 5, 2] = np.nan
    with pytest.raises(PredictionError, match=rf"{frames[3].path.name}: prediction field 'coords' is nan at joint 5 "
                                              r"\(L_Knee\), axis z"):
        evaluate(coords, frames, "mhp-p2", MHP)
    with pytest.raises(PredictionError, match=r"expected \(16, 18, 3\)"):
        evaluate(coords[:, :17], frames, "mhp-p2", MHP)


def test_frames_with_an_empty_box_are_not_scored(syn):
    frames = _frames(syn)
    frames[0] = dataclasses.replace(frames[0], bbox=np.array([10.0, 10.0, 0.0, 40.0]))
    coords = np.concatenate([np.zeros((1, 18, 3)), _encode(frames[1:], MHP)])  # frame 0's row is not read
    r = evaluate(coords, frames, "mhp-p2", MHP)
    assert r.skipped_empty_box == 1 and r.frames == len(frames) - 1 and r.value_mm < 1e-3


def test_a_non_square_input_pads_the_box_to_its_own_aspect_ratio(syn):
    # A 256x192 (H x W) crop, as SimpleBaseline-style pose nets use: process_bbox pads each box to aspect 0.75,
    # not to the square default; decoding through a square box misplaces the joints (5.7 mm here, after the
    # root-centring removes the shared shift).
    tall = MapSpec((256, 192), (64, 48), 64)
    frames = _frames(syn)
    coords = _encode(frames, tall)
    assert evaluate(coords, frames, "mhp-p2", tall).value_mm < 1e-3
    square = MapSpec((256, 256), (64, 64), 64)
    assert evaluate(_encode(frames, square), frames, "mhp-p2", tall).value_mm > 1


def test_result_fields_and_record_dict_worked_by_hand(syn):
    # Unequal action counts (8 Discussion, 3 Walking) with 5 and 10 mm offsets: the per-(frame, joint) mean and
    # the mean of the action means differ, so the protocol object's aggregation is what decides the value.
    import torch
    frames = _frames(syn)
    walking = [i for i, fr in enumerate(frames) if fr.key.action == 14]
    frames = [fr for i, fr in enumerate(frames) if i not in walking[3:]]
    gt = np.stack([fr.joints_cam for fr in frames])
    pred = gt.copy()
    is_walk = np.array([fr.key.action == 14 for fr in frames])
    pred[~is_walk, 1:17] += (3.0, 4.0, 0.0)
    pred[is_walk, 1:17] += (6.0, 8.0, 0.0)
    coords = _encode(frames, POSENET, pred)
    d, w = 5.0 * 16 / 17, 10.0 * 16 / 17
    base = H.get_protocol("mhp-p2")
    by_action = dataclasses.replace(base, name="mhp-p2-by-action", aggregation="action")
    r = evaluate(coords, frames, by_action, POSENET)  # a Protocol object, not a name: used as given
    assert r.value_mm == pytest.approx((d + w) / 2, abs=1e-3)
    assert r.protocol == "mhp-p2-by-action" and r.numbering == base.numbering
    assert r.aggregation == "mean of per-action means"
    f = evaluate(coords, frames, "mhp-p2", POSENET)
    assert f.value_mm == pytest.approx((8 * d + 3 * w) / 11, abs=1e-3) and f.aggregation == "frame-weighted mean over (sample, joint)"
    assert f.per_joint.shape == (11, 17)
    np.testing.assert_allclose(f.per_joint[:, 1:], np.where(is_walk, 10.0, 5.0)[:, None] * np.ones((1, 16)), atol=1e-3)
    np.testing.assert_allclose(f.per_joint[:, 0], 0.0, atol=1e-6)  # the root, after root-centring
    m = f.as_metrics()
    assert set(m) == {"mpjpe_mm", "per_action", "frames", "skipped_empty_box", "protocol", "numbering", "aggregation"}
    assert (m["frames"], m["skipped_empty_box"], m["protocol"]) == (11, 0, "mhp-p2")
    assert m["numbering"] == base.numbering and m["aggregation"] == f.aggregation
    assert m["per_action"] == {"Discussion": {"mpjpe_mm": f.per_action["Discussion"], "frames": 8},
                               "Walking": {"mpjpe_mm": f.per_action["Walking"], "frames": 3}}
    # a torch tensor that still requires grad (a model's output outside no_grad) scores like its values
    t = evaluate(torch.tensor(coords, requires_grad=True), frames, "mhp-p2", POSENET)
    assert t.value_mm == f.value_mm


def test_no_frame_to_score_returns_empty_joints_or_says_so(syn):
    from passbench.pose.evaluate import camera_joints
    pred, keep = camera_joints(np.zeros((0, 18, 3)), [], MHP)
    assert pred.shape == (0, 18, 3) and keep.dtype == bool and keep.shape == (0,)
    frames = [dataclasses.replace(fr, bbox=np.array([10.0, 10.0, 0.0, 40.0])) for fr in _frames(syn)[:2]]
    pred, keep = camera_joints(np.zeros((2, 18, 3)), frames, MHP)
    assert pred.shape == (0, 18, 3) and keep.tolist() == [False, False]
    with pytest.raises(ValueError, match=r"none of the 2 frames can be scored \(no frames, or every processed box is "
                                         r"empty\)"):
        evaluate(np.zeros((2, 18, 3)), frames, "mhp-p2", MHP)


def test_a_pose_model_runs_through_the_pipeline(syn):
    from passbench.models import build_model
    from passbench.pose.crop import crop_image

    torch.manual_seed(0)
    model = build_model("mhp_lpski").eval()
    spec = MapSpec.of(model)
    assert spec == MHP
    frames = _frames(syn)[:4]
    patches = [crop_image(fr.image(), H.process_bbox(fr.bbox, fr.width, fr.height, spec.input_hw), spec.input_hw)
               for fr in frames]
    with torch.no_grad():
        coords = predict(model, to_input(patches), flip_test=True)
    r = evaluate(coords, frames, "mhp-p2", spec)
    assert np.isfinite(r.value_mm) and r.value_mm > 0 and r.frames == 4
    with pytest.raises(TypeError, match="not a pose model"):
        MapSpec.of(nn.Conv2d(1, 1, 1))


# ---------------------------------------------------------------------------------------------- targets


def test_targets_hand_example_and_visibility():
    # box [0, 0, 256, 256] = the patch: output units are u / 8 for a 32x32 map; z: Z_rel/1000 -> [-1, 1] -> [0, 1] x 32.
    j = np.array([[128.0, 64.0, 0.0], [0.0, 255.0, 500.0], [300.0, 10.0, 0.0], [10.0, 10.0, 1000.0]])
    t, vis = coord_targets(j, [0, 0, 256, 256], MHP, pairs=())
    np.testing.assert_allclose(t[:2], [[16, 8, 16], [0, 31.875, 24]], atol=1e-5)
    np.testing.assert_array_equal(vis, [1, 1, 0, 0])  # outside the patch; z at the range's far end (z = 1)


def test_target_decodes_back_to_the_joints_and_flip_augmentation_matches_the_crop(syn):
    fr = _frames(syn)[0]
    box = H.process_bbox(fr.bbox, fr.width, fr.height, (256, 256))
    t, vis = coord_targets(fr.joints_img, box, POSENET)
    uvz = to_image(t[None], box[None], np.array([fr.root_cam[2]]), POSENET)[0]
    np.testing.assert_allclose(uvz[:, :2], fr.joints_img[:, :2], atol=1e-3)
    np.testing.assert_allclose(uvz[:, 2], fr.joints_cam[:, 2], atol=1e-3)
    # Flip + rotation + scale: a marker painted at each joint lands where the target says (patch px).
    img = np.zeros((fr.height, fr.width, 3), np.uint8)
    wrist = H.JOINT_NAMES.index("L_Wrist")
    u, v = np.round(fr.joints_img[wrist, :2]).astype(int)
    img[v, u] = 255
    aug = dict(scale=1.1, rot_deg=15.0)
    patch = crop_image(img, box, (256, 256), flip=True, **aug)
    tf, _ = coord_targets(np.round(fr.joints_img), box, POSENET, flip_width=fr.width, **aug)
    right = H.JOINT_NAMES.index("R_Wrist")  # after the flip the left wrist is the right one
    y, x = np.unravel_index(patch[..., 0].argmax(), patch.shape[:2])
    assert abs(tf[right, 0] * 4 - x) <= 2 and abs(tf[right, 1] * 4 - y) <= 2


def test_coord_l1_loss_hand_example():
    target = torch.zeros(1, 2, 3)
    pred = torch.tensor([[[3.0, 6.0, 9.0], [1.0, 1.0, 1.0]]], requires_grad=True)
    vis = torch.tensor([[1.0, 0.0]])
    loss = coord_l1_loss(pred, target, vis)  # joint 0: (3 + 6 + 9) / 3 = 6; joint 1 invisible: 0; mean 3
    assert float(loss.detach()) == pytest.approx(3.0)
    assert float(coord_l1_loss(pred, target, vis, have_depth=torch.zeros(1)).detach()) == pytest.approx(1.5)  # (3 + 6)/3 / 2
    loss.backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[[1 / 6, 1 / 6, 1 / 6], [0.0, 0.0, 0.0]]]))
    with pytest.raises(ValueError, match="differ"):
        coord_l1_loss(pred, torch.zeros(1, 3, 3), vis)
