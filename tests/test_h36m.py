"""Human3.6M loader (3DMPPE layout) and the SYNTHETIC generator: round trip, geometry, protocols, errors."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from passbench.datasets import h36m as H
from passbench.datasets import synthetic_h36m as G


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("h36m_syn")
    t0 = time.perf_counter()
    out = G.generate(root, subjects=(9, 11), actions=(3, 14), frames=130, cams=(1, 2), size=256)
    print(f"synthetic generation: {time.perf_counter() - t0:.2f} s for 2x2x1x2x130 images")
    return out


def test_layout_and_synthetic_labels(syn):
    base = syn.root / "Human36M"
    # Example path from REFERENCE.md 3.1 (frame_idx 0 -> _000001.jpg), for our subject/action.
    assert (base / "images/s_09_act_14_subact_01_ca_01/s_09_act_14_subact_01_ca_01_000001.jpg").is_file()
    assert (base / "images/s_11_act_03_subact_01_ca_02/s_11_act_03_subact_01_ca_02_000130.jpg").is_file()
    assert (base / "SYNTHETIC").is_file()
    for s in (9, 11):
        for k in ("data", "camera", "joint_3d"):
            assert (base / f"annotations/Human36M_subject{s}_{k}.json").is_file()
    data = json.loads((base / "annotations/Human36M_subject9_data.json").read_text())
    assert data["info"]["synthetic"] is True
    im = data["images"][0]
    assert set(im) == {"id", "file_name", "width", "height", "subject", "action_name", "action_idx",
                       "subaction_idx", "cam_idx", "frame_idx"}
    assert im["action_name"] == "Discussion" and len(data["annotations"][0]["keypoints_vis"]) == 17
    ds = H.Human36M(syn.root, "mhp-p2", "test")
    assert ds.synthetic and ds.summary()["name"] == "synthetic_h36m"


def test_round_trip_projection_matches_drawn_2d_and_bbox_contains_joints(syn):
    ds = H.Human36M(syn.root, "mhp-p2", "test")
    assert len(ds) == 8 and ds.num_frames == 8 * 130
    for st in ds:
        uv = st.joints_img()[:, :17, :2]  # loader: R X + t, then u = X/Z fx + cx
        drawn = syn.drawn_2d[st.key.folder]  # generator: cv2.projectPoints
        assert np.abs(uv - drawn).max() < 1.0, st.key.folder
        assert np.abs(uv - drawn).max() < 1e-3  # in fact they agree far better than a pixel
        for fr in st:
            x, y, w, h = fr.bbox
            u, v = fr.joints_img[:17, 0], fr.joints_img[:17, 1]
            assert (u >= x).all() and (u <= x + w).all() and (v >= y).all() and (v <= y + h).all()
            bx, by, bw, bh = fr.bbox_processed
            assert bw == pytest.approx(bh)  # padded to the 256x256 input aspect ratio
            assert (u >= bx).all() and (u <= bx + bw).all() and (v >= by).all() and (v <= by + bh).all()


def test_images_show_the_figure_at_the_projected_joints(syn):
    ds = H.Human36M(syn.root, "mhp-p2", "test", subjects=(9,), cameras=(1,))
    hit = tot = 0
    for st in ds:
        bg = G._background(256, 0 * 10 + st.key.camera)[:, :, ::-1].astype(int)  # RGB
        for i in (0, 50, 129):
            fr = st[i]
            img = fr.image().astype(int)
            assert img.shape == (256, 256, 3)
            for u, v in np.round(fr.joints_img[:17, :2]).astype(int):
                if 0 <= u < 256 and 0 <= v < 256:
                    tot += 1
                    hit += np.abs(img[v, u] - bg[v, u]).sum() > 60  # a limb is painted there
    assert tot > 80 and hit / tot > 0.9


def test_streams_are_in_frame_order_and_flag_protocol_frames(syn):
    ds = H.Human36M(syn.root, "mhp-p2", "test")
    keys = list(ds.streams)
    assert keys == sorted(keys) and keys[0] == H.StreamKey(9, 3, 1, 1)
    st = ds.streams[H.StreamKey(11, 14, 1, 2)]
    assert st.contiguous and list(st.frame_idx) == list(range(130))
    assert list(np.flatnonzero(st.eval_mask)) == [0, 64, 128]
    assert ds.num_eval_frames == 8 * 3
    assert [f.frame_idx for f in ds.eval_frames()][:3] == [0, 64, 128]
    tr = H.Human36M(syn.root, "mhp-p2", "train", subjects=(9,))
    assert tr.stride == 5 and tr.num_eval_frames == 4 * 26  # 0, 5, ..., 125
    vp = H.Human36M(syn.root, "vp3d-p1", "test", actions=("Walking",))
    assert len(vp) == 4 and vp.num_eval_frames == 4 * 130


def test_frame_geometry_thorax_and_root(syn):
    fr = next(H.Human36M(syn.root, "mhp-p1", "test").eval_frames())
    assert fr.key.subject == 11  # mhp-p1 tests on S11 only
    np.testing.assert_allclose(fr.joints_cam[17], 0.5 * (fr.joints_cam[H.L_SHOULDER] + fr.joints_cam[H.R_SHOULDER]))
    assert fr.joints_img[H.ROOT, 2] == 0.0 and np.allclose(fr.root_cam, fr.joints_cam[0])
    # camera -> pixel -> camera round trip with the stored depth
    uvz = fr.camera.cam_to_pixel(fr.joints_cam)
    np.testing.assert_allclose(fr.camera.pixel_to_cam(uvz), fr.joints_cam, atol=1e-6)


def test_camera_projection_hand_example():
    # R = I, t = 0: X = (100, 200, 2000) mm -> u = 100/2000*1000 + 500 = 550, v = 200/2000*1000 + 500 = 600.
    cam = H.Camera(np.eye(3), np.zeros(3), np.array([1000.0, 1000.0]), np.array([500.0, 500.0]))
    np.testing.assert_allclose(cam.project(np.array([[100.0, 200, 2000]])), [[550, 600]], atol=1e-6)
    # Translation convention: t is added after rotation (X_cam = R X + t), not subtracted before it.
    rz = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 deg about z
    cam2 = H.Camera(rz, np.array([0.0, 0, 1000]), np.array([1000.0, 1000.0]), np.zeros(2))
    # R (100, 0, 1000) = (0, 100, 1000); + t = (0, 100, 2000) -> u = 0, v = 50
    np.testing.assert_allclose(cam2.project(np.array([100.0, 0, 1000])), [0, 50], atol=1e-6)


def test_process_bbox_hand_examples():
    # [10, 20, 50, 100] in 640x480: x2 = 10 + 49 = 59, y2 = 20 + 99 = 119 -> w 49, h 99, centre (34.5, 69.5);
    # pad to square: w = 99; x1.25 -> 123.75; x = 34.5 - 61.875 = -27.375, y = 69.5 - 61.875 = 7.625
    np.testing.assert_allclose(H.process_bbox([10, 20, 50, 100], 640, 480), [-27.375, 7.625, 123.75, 123.75])
    # clipped at the border: [-10, -10, 30, 30] -> x1 = y1 = 0, x2 = y2 = 29 -> 29x29, centre 14.5 -> 36.25 side
    np.testing.assert_allclose(H.process_bbox([-10, -10, 30, 30], 640, 480), [-3.625, -3.625, 36.25, 36.25])
    # wide input aspect (H, W) = (256, 192) -> W/H = 0.75: a 100x100 box becomes w 99, h 132 before x1.25
    np.testing.assert_allclose(H.process_bbox([0, 0, 100, 100], 640, 480, input_hw=(256, 192))[2:],
                               [99 * 1.25, 132 * 1.25])
    assert H.process_bbox([10, 10, 0, 50], 640, 480) is None


def test_protocols_by_name():
    p1, p2 = H.get_protocol("mhp-p1"), H.get_protocol("mhp-p2")
    assert (p1.metric, p1.test_subjects, p1.train_subjects, p1.test_stride) == ("pa_mpjpe", (11,), (1, 5, 6, 7, 8, 9), 64)
    assert (p2.metric, p2.test_subjects, p2.train_subjects, p2.train_stride) == ("mpjpe", (9, 11), (1, 5, 6, 7, 8), 5)
    assert H.get_protocol("vp3d-p1").metric == "mpjpe" and H.get_protocol("vp3d-p1").test_stride == 1
    assert H.get_protocol("vp3d-p2").metric == "p_mpjpe"
    assert H.get_protocol("h36m_p2") is p2  # the configs' label
    from passbench.metrics.pose import METRICS

    assert {p.metric for p in H.PROTOCOLS.values()} <= set(METRICS)
    with pytest.raises(KeyError, match="mhp-p1"):
        H.get_protocol("mhp_p1")


def test_actions_and_paper_table2_map():
    assert H.action_name(2) == "Directions" and H.action_name(16) == "WalkTogether" and H.action_name(12) == "Photo"
    from passbench.report.tables import _ACTIONS  # the report's Table 2 columns (someone else's list)

    assert [p.column for p in H.PAPER_TABLE2] == _ACTIONS
    for p in H.PAPER_TABLE2:
        assert H.action_name(p.action_idx) == p.action
    outdoor = [p.column for p in H.PAPER_TABLE2 if "outdoor" in p.paper_setting]
    assert outdoor == ["photo", "walk", "walkdog"]
    rows = H.paper_table2_rows()
    assert all("indoor" in r["dataset_setting"] for r in rows)
    assert all(r["note"] for r in rows if r["column"] in outdoor)


def test_skips_the_corrupt_s11_video(tmp_path):
    G.generate(tmp_path, subjects=(11,), actions=(2,), subactions=(2,), frames=3, cams=(1, 2), size=64)
    ds = H.Human36M(tmp_path, "mhp-p1", "test")
    assert [k.folder for k in ds.streams] == ["s_11_act_02_subact_02_ca_02"]


def _copy(syn, tmp_path):
    dst = tmp_path / "root"
    shutil.copytree(syn.root / "Human36M" / "annotations", dst / "Human36M" / "annotations")
    return dst, dst / "Human36M" / "annotations"


def test_errors_name_the_file_and_field(syn, tmp_path):
    root, ann = _copy(syn, tmp_path)
    (ann / "Human36M_subject11_camera.json").unlink()
    with pytest.raises(FileNotFoundError, match="Human36M_subject11_camera.json"):
        H.Human36M(root, "mhp-p2")
    (ann / "Human36M_subject9_joint_3d.json").write_text('{"3": {"1": ')
    with pytest.raises(H.H36MFormatError, match=r"subject9_joint_3d.json: malformed json at line 1"):
        H.Human36M(root, "mhp-p2", subjects=(9,))

    root, ann = _copy(syn, tmp_path / "b")
    p = ann / "Human36M_subject9_data.json"
    d = json.loads(p.read_text())
    del d["images"][5]["frame_idx"]
    p.write_text(json.dumps(d))
    with pytest.raises(H.H36MFormatError, match=r"subject9_data.json: images\[5\]: missing field 'frame_idx'"):
        H.Human36M(root, "mhp-p2", subjects=(9,))

    root, ann = _copy(syn, tmp_path / "c")
    p = ann / "Human36M_subject9_camera.json"
    d = json.loads(p.read_text())
    del d["2"]["f"]
    p.write_text(json.dumps(d))
    with pytest.raises(H.H36MFormatError, match=r"subject9_camera.json: \['2'\]: missing field 'f'"):
        H.Human36M(root, "mhp-p2", subjects=(9,))

    root, ann = _copy(syn, tmp_path / "d")
    p = ann / "Human36M_subject9_joint_3d.json"
    d = json.loads(p.read_text())
    del d["14"]["1"]["77"]
    p.write_text(json.dumps(d))
    with pytest.raises(H.H36MFormatError, match=r"subject9_joint_3d.json: \['14'\]\['1'\]: missing field '77'"):
        H.Human36M(root, "mhp-p2", subjects=(9,))


def test_gt_through_pose_metrics_is_zero_and_noise_is_measured(syn):
    from passbench.metrics import pose as P

    ds = H.Human36M(syn.root, "mhp-p2")
    frames = list(ds.eval_frames())
    gt = P.root_align(np.stack([f.joints_cam[list(H.EVAL_JOINTS)] for f in frames]))  # (N, 17, 3)
    assert P.mpjpe(gt, gt).mean == 0.0
    pred = gt.copy()
    pred[:, 1:] += np.array([3.0, 4.0, 0.0])  # 5 mm (3-4-5) on the 16 non-root joints; root stays at 0
    e = P.mpjpe(P.root_align(pred), gt)
    assert e.mean == pytest.approx(5.0 * 16 / 17)


@pytest.mark.data
def test_real_human36m_if_present():
    from passbench.paths import resolve_data_root

    if not (resolve_data_root() / "Human36M" / "annotations").is_dir():
        pytest.skip("no Human3.6M under the data root")
    ds = H.Human36M(None, "mhp-p2", "test", actions=("Walking",), cameras=(1,))
    assert not ds.synthetic and len(ds) > 0 and all(st.contiguous for st in ds)
