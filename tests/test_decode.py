"""Letterbox + FairMOT decoding against hand-worked numbers and upstream's affine recipe."""

import math

import cv2
import numpy as np
import pytest
import torch

from passbench.tracking.decode import decode_frame, heatmap_nms, mot_decode
from passbench.tracking.letterbox import letterbox, letterbox_transform


def _heads(h=16, w=24, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "hm": torch.full((1, 1, h, w), -10.0),
        "wh": torch.zeros(1, 4, h, w),
        "reg": torch.zeros(1, 2, h, w),
        "id": torch.randn(1, d, h, w, generator=g),
    }


def _peak(out, x, y, logit, reg=(0.0, 0.0), ltrb=(1.0, 1.0, 1.0, 1.0)):
    out["hm"][0, 0, y, x] = logit
    out["reg"][0, :, y, x] = torch.tensor(reg)
    out["wh"][0, :, y, x] = torch.tensor(ltrb)


def test_decode_hand_built_heatmap():
    # Frame 120x60 into a 96x64 input: ratio = min(64/60, 96/120) = 0.8, image 96x48, pad_y = 8.
    tf = letterbox_transform((120, 60), (96, 64))
    assert tf.ratio == pytest.approx(0.8) and tf.pad_x == 0 and tf.pad_y == pytest.approx(8.0)
    out = _heads()
    _peak(out, 10, 5, 2.0, reg=(0.25, 0.5), ltrb=(2, 3, 4, 5))
    _peak(out, 11, 5, 1.5)  # lower neighbour of the first peak: NMS must suppress it
    _peak(out, 20, 12, 0.0, ltrb=(1, 2, 1, 2))  # score 0.5 > 0.4: kept
    _peak(out, 3, 13, -1.0)  # score 0.27: below conf_thres
    dets = decode_frame(out, tf, conf_thres=0.4, K=500)
    assert len(dets) == 2
    # Peak 1 by hand: centre (10.25, 5.5) cells; box (8.25, 2.5, 14.25, 10.5) cells
    # -> x4 = (33, 10, 57, 42) input px -> ((x - 0) / 0.8, (y - 8) / 0.8).
    np.testing.assert_allclose(dets.boxes[0], [41.25, 2.5, 71.25, 42.5, 1 / (1 + math.exp(-2))], atol=1e-5)
    # Peak 2: centre (20, 12) -> box (19, 10, 21, 14) cells -> (76, 40, 84, 56) px.
    np.testing.assert_allclose(dets.boxes[1], [95, 40, 105, 60, 0.5], atol=1e-5)
    # Embeddings: the L2-normalised id vector at each peak cell.
    for i, (x, y) in enumerate([(10, 5), (20, 12)]):
        v = out["id"][0, :, y, x].numpy()
        np.testing.assert_allclose(dets.embeddings[i], v / np.linalg.norm(v), atol=1e-6)
        assert np.linalg.norm(dets.embeddings[i]) == pytest.approx(1.0, abs=1e-6)


def test_degenerate_boxes_are_dropped():
    tf = letterbox_transform((96, 64), (96, 64))
    out = _heads()
    _peak(out, 5, 5, 3.0, ltrb=(-1.0, 1.0, 0.5, 1.0))  # width -0.5 cells
    _peak(out, 15, 5, 3.0, ltrb=(1.0, 0.0, 1.0, 0.0))  # height 0
    _peak(out, 10, 12, 3.0)
    dets = decode_frame(out, tf, conf_thres=0.4)
    np.testing.assert_allclose(dets.boxes[:, :4], [[36, 44, 44, 52]])


def test_nms_keeps_only_local_maxima():
    hm = torch.zeros(1, 1, 5, 5)
    hm[0, 0, 2, 2], hm[0, 0, 2, 3], hm[0, 0, 0, 0] = 0.9, 0.8, 0.3
    kept = heatmap_nms(hm)
    assert kept[0, 0, 2, 2] == pytest.approx(0.9) and kept[0, 0, 2, 3] == 0 and kept[0, 0, 0, 0] == pytest.approx(0.3)


def test_mot_decode_wh_mode_and_small_grid_k():
    hm = torch.zeros(1, 1, 3, 3)
    hm[0, 0, 1, 1] = 0.7
    wh = torch.zeros(1, 2, 3, 3)
    wh[0, :, 1, 1] = torch.tensor([2.0, 4.0])
    dets, inds = mot_decode(hm, wh, None, K=500, ltrb=False)  # K clamps to the 9 cells
    assert dets.shape == (1, 9, 5) and inds[0, 0] == 4
    # No reg: centre at cell + 0.5 (upstream), box = centre -/+ wh/2.
    np.testing.assert_allclose(dets[0, 0].numpy(), [0.5, -0.5, 2.5, 3.5, 0.7], atol=1e-6)


def _ctdet_inverse(c, s, out_w, out_h):
    """Upstream ``get_affine_transform(c, s, 0, (out_w, out_h), inv=1)``: three-point recipe."""
    src_dir, dst_dir = np.array([0, -0.5 * s]), np.array([0, -0.5 * out_w])
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0], src[1] = c, c + src_dir
    dst[0], dst[1] = [out_w * 0.5, out_h * 0.5], np.array([out_w * 0.5, out_h * 0.5]) + dst_dir
    for p in (src, dst):  # get_3rd_point: rotate (p0 - p1) by 90 degrees about p1
        d = p[0] - p[1]
        p[2] = p[1] + np.array([-d[1], d[0]])
    return cv2.getAffineTransform(dst, src)


@pytest.mark.parametrize("frame_wh", [(640, 480), (768, 576), (1920, 1080), (500, 900), (1000, 301)])
def test_letterbox_inverse_matches_ctdet_post_process(frame_wh):
    w, h = frame_wh
    in_w, in_h = 1088, 608
    tf = letterbox_transform((w, h), (in_w, in_h))
    c = np.array([w / 2.0, h / 2.0])
    s = max(in_w / in_h * h, w)
    m = _ctdet_inverse(c, s, in_w // 4, in_h // 4)
    pts = np.random.default_rng(0).uniform(0, 272, size=(10, 4))  # grid-unit boxes
    ours = tf.to_original(pts * 4)
    ref = np.concatenate([pts[:, :2] @ m[:, :2].T + m[:, 2], pts[:, 2:] @ m[:, :2].T + m[:, 2]], 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(tf.to_input(ours), pts * 4, atol=1e-9)


def test_letterbox_tensor_matches_upstream_recipe():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    x, tf = letterbox(rgb, (1088, 608))
    assert x.shape == (3, 608, 1088) and x.dtype == torch.float32
    # ratio 608/480; resized to round(640*1.2667)=811 x 608; dw = 138.5 -> left 138, right 139.
    new_w = round(640 * 608 / 480)
    assert new_w == 811
    ref = cv2.resize(rgb, (811, 608), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    np.testing.assert_allclose(x[:, :, 138:138 + 811].permute(1, 2, 0).numpy(), ref, atol=1e-6)
    # Pad colour 127.5 stored in uint8 -> 128, divided by 255, no mean/std.
    assert torch.all(x[:, :, :138] == 128 / 255.0) and torch.all(x[:, :, 138 + 811:] == 128 / 255.0)
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        letterbox(rgb[..., 0])


def test_decode_errors_are_clear():
    out = _heads()
    tf = letterbox_transform((120, 60), (96, 64))
    with pytest.raises(KeyError, match="reg"):
        decode_frame({k: v for k, v in out.items() if k != "reg"}, tf)
    with pytest.raises(ValueError, match="integer multiple"):
        decode_frame(out, letterbox_transform((120, 60), (100, 64)))
