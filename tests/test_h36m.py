"""Human3.6M loader (3DMPPE layout) and the SYNTHETIC generator: round trip, geometry, protocols, errors."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from passbench.datasets import h36m as H
from passbench.datasets import synthetic_h36m as G
from passbench.datasets import synthetic_motion as M
from passbench.datasets import synthetic_scene as S


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


def _bg(fr) -> np.ndarray:
    """(H, W, 3) int RGB background of a synthetic frame (its setting, seen by its camera), no figure."""
    cam = S.Cam(fr.camera.R, fr.camera.t, fr.camera.f, fr.camera.c)
    return S.render_background(G.setting_of(fr.key.action), cam, fr.width, 0)[:, :, ::-1].astype(int)


def test_images_show_the_figure_at_the_projected_joints(syn):
    ds = H.Human36M(syn.root, "mhp-p2", "test", subjects=(9,), cameras=(1,))
    assert {st.key.action for st in ds} == {3, 14}
    for st in ds:  # Discussion (fixed camera) and Walking (moving camera)
        hit = tot = 0
        for i in (0, 50, 129):
            fr = st[i]
            img, bg = fr.image().astype(int), _bg(fr)
            assert img.shape == (256, 256, 3)
            # Half an image away from the pelvis there is only background: the render matches it.
            far_col = (int(round(fr.joints_img[H.ROOT, 0])) + 128) % 256
            assert np.median(np.abs(img - bg).sum(-1)[:, far_col]) < 20, st.key.folder
            for u, v in np.round(fr.joints_img[:17, :2]).astype(int):
                if 0 <= u < 256 and 0 <= v < 256:
                    tot += 1
                    hit += np.abs(img[v, u] - bg[v, u]).sum() > 60  # a limb is painted there
        assert tot > 40 and hit / tot > 0.9, st.key.folder


def test_table2_conditions_fixed_plain_indoor_vs_moving_cluttered_outdoor(syn):
    """Discussion: static camera, plain background; Walking: the camera pans and translates over clutter."""
    import cv2

    ds = H.Human36M(syn.root, "mhp-p2", "test", subjects=(9,), cameras=(1,))
    fixed, moving = ds.streams[H.StreamKey(9, 3, 1, 1)], ds.streams[H.StreamKey(9, 14, 1, 1)]
    assert not fixed.moving and moving.moving and fixed.camera_at(100) is fixed.camera
    centres = np.stack([-c.R.T @ c.t for c in moving.cameras])  # (F, 3) mm
    axes = np.stack([c.R[2] for c in moving.cameras])  # optical axes
    assert np.linalg.norm(centres[-1] - centres[0]) > 300  # translates (mm over 2.6 s)
    assert np.degrees(np.arccos(np.clip(axes[0] @ axes[-1], -1, 1))) > 5  # pans
    # The same background pixels, first vs last frame: equal for the fixed camera (up to JPEG), not for the moving one.
    for st, changes in ((fixed, False), (moving, True)):
        a, b = _bg(st[0]), _bg(st[129])
        assert (np.abs(a - b).mean() > 10) == changes, st.key.folder
    # Clutter: mean gradient magnitude of the background, outdoor vs indoor.
    grad = [np.abs(cv2.Laplacian(_bg(st[0]).astype(np.float32), cv2.CV_32F)).mean() for st in (fixed, moving)]
    assert grad[1] > 5 * grad[0], grad
    sm = ds.summary()
    assert sm["moving_camera_streams"] == 1 and sm["synthetic"]
    assert sm["settings"]["Walking"] == {"action": "Walking", "background": "outdoor, cluttered background",
                                         "camera": "moving (pans and translates)"}
    assert sm["settings"]["Discussion"]["camera"] == "fixed" and "indoor" in sm["settings"]["Discussion"]["background"]
    # Every Table 2 column's group is what the paper's header says.
    for p in H.PAPER_TABLE2:
        assert G.setting_of(p.action_idx) == ("outdoor" if "outdoor" in p.paper_setting else "indoor")


def test_action_specific_motion():
    """Each Table 2 action moves its own way (world mm, 2.6 s at 50 fps)."""
    t = np.arange(130) / G.FPS
    P = {a: np.stack([M.pose_world(x, a, 9) for x in t]) for a in G.TABLE2_ACTIONS}  # (F, 17, 3)
    j = {n: H.JOINT_NAMES.index(n) for n in ("Pelvis", "Head", "L_Wrist", "R_Wrist", "L_Knee", "Nose")}
    assert P[M.EATING][:, j["Pelvis"], 2].max() < 600  # seated
    assert np.linalg.norm(P[M.EATING][:, j["R_Wrist"]] - P[M.EATING][:, j["Nose"]], axis=-1).min() < 150  # to mouth
    assert (P[M.GREETING][:, j["R_Wrist"], 2] > P[M.GREETING][:, j["Head"], 2]).mean() > 0.5  # waving above the head
    assert np.linalg.norm(P[M.PHONING][:, j["L_Wrist"]] - P[M.PHONING][:, j["Head"]], axis=-1).max() < 400
    photo = P[M.PHOTO]
    both = np.linalg.norm(photo[:, [j["L_Wrist"], j["R_Wrist"]]] - photo[:, [j["Nose"]]], axis=-1)
    assert both.max() < 400  # both hands at the face
    for a in (M.WALKING, M.WALKDOG):  # walkers travel; the dog walker more slowly
        assert np.ptp(P[a][:, j["Pelvis"], :2], axis=0).max() > 1000
    v = {a: np.linalg.norm(np.diff(P[a][:, 0, :2], axis=0), axis=1).mean() * G.FPS for a in (M.WALKING, M.WALKDOG)}
    assert v[M.WALKDOG] < 0.8 * v[M.WALKING]
    talk = P[M.DISCUSSION]
    assert np.ptp(talk[:, j["L_Wrist"]], axis=0).max() > 100 and np.ptp(talk[:, 0, :2], axis=0).max() < 800
    # Limb lengths stay fixed (a rigid skeleton): thigh of every action.
    for a, p in P.items():
        thigh = np.linalg.norm(p[:, j["L_Knee"]] - p[:, H.JOINT_NAMES.index("L_Hip")], axis=-1)
        assert np.ptp(thigh) < 1e-6, a


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
    import csv
    from pathlib import Path

    from passbench.report.tables import _ACTIONS  # the report's Table 2 columns -> Human3.6M action names

    # the column order of the transcribed paper table (results/paper/table2_pose_env.csv), written by hand
    # from the PDF, is the independent reference for both lists
    paper_csv = Path(__file__).resolve().parents[1] / "results" / "paper" / "table2_pose_env.csv"
    header = next(csv.reader(paper_csv.open()))
    paper_cols = [h[len("mpjpe_mm_"):] for h in header if h.startswith("mpjpe_mm_")]
    assert [p.column for p in H.PAPER_TABLE2] == paper_cols
    assert list(_ACTIONS) == paper_cols
    assert _ACTIONS["talking"] == "Discussion" and _ACTIONS["walk"] == "Walking"
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


def test_bad_input_names_file_and_field(tmp_path):
    """An image whose size differs from its json, a missing action, image folder or per-frame camera."""
    G.generate(tmp_path, subjects=(9,), actions=(3, 14), frames=4, cams=(1,), size=64)
    ann = tmp_path / "Human36M" / "annotations" / "Human36M_subject9_data.json"
    st = H.Human36M(tmp_path, "mhp-p2", subjects=(9,)).streams[H.StreamKey(9, 3, 1, 1)]
    assert st[2].image().shape == (64, 64, 3)  # the size check passes on good data
    import cv2

    cv2.imwrite(str(st.paths[2]), np.zeros((48, 64, 3), np.uint8))  # now 64x48 px, the json says 64x64
    with pytest.raises(H.H36MFormatError, match=r"_000003\.jpg: image is 64x48 px but .*subject9_data\.json: "
                                                r"images\[2\] says width=64, height=64"):
        st[2].image()
    with pytest.raises(H.H36MFormatError, match=r"images\[2\] says width=64"):
        list(st.images())
    # A requested action (or a protocol subject) the root does not have.
    with pytest.raises(H.H36MFormatError, match=r"subject9_data\.json: subject 9 has no images of action_idx "
                                                r"12 \(Photo\), which this run needs"):
        H.Human36M(tmp_path, "mhp-p2", subjects=(9,), actions=("Discussion", "Photo"))
    with pytest.raises(FileNotFoundError, match="Human36M_subject11_data.json"):
        H.Human36M(tmp_path, "mhp-p2")  # the protocol's test subjects are 9 and 11
    # A moving-camera frame without its camera.
    d = json.loads(ann.read_text())
    k = next(i for i, im in enumerate(d["images"]) if im["action_idx"] == 14 and im["frame_idx"] == 1)
    del d["images"][k]["camera"]
    ann.write_text(json.dumps(d))
    with pytest.raises(H.H36MFormatError, match=rf"subject9_data\.json: images\[{k}\]: missing field 'camera'"):
        H.Human36M(tmp_path, "mhp-p2", subjects=(9,))
    d["images"][k]["camera"] = {"R": [[1, 0, 0]], "t": [0, 0, 0], "f": [1, 1], "c": [0, 0]}
    ann.write_text(json.dumps(d))
    with pytest.raises(H.H36MFormatError, match=rf"images\[{k}\]: field 'camera': field 'R' is not a \(3, 3\)"):
        H.Human36M(tmp_path, "mhp-p2", subjects=(9,))
    # A missing image folder.
    G.generate(tmp_path, subjects=(9,), actions=(3, 14), frames=4, cams=(1,), size=64)
    shutil.rmtree(tmp_path / "Human36M" / "images" / "s_09_act_14_subact_01_ca_01")
    with pytest.raises(FileNotFoundError, match=r"image folder .*s_09_act_14_subact_01_ca_01 is missing"):
        H.Human36M(tmp_path, "mhp-p2", subjects=(9,))
    assert len(H.Human36M(tmp_path, "mhp-p2", subjects=(9,), check_images=False)) == 2


def test_generation_is_deterministic_and_cached(tmp_path):
    a = G.generate(tmp_path / "a", subjects=(1, 9), actions=(4, 15), frames=3, cams=(1,), size=64, workers=2)
    b = G.generate(tmp_path / "b", subjects=(1, 9), actions=(4, 15), frames=3, cams=(1,), size=64)
    assert a.images == b.images == 2 * 2 * 3
    for f in sorted((tmp_path / "a").rglob("*.*")):
        assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes(), f
    root = G.ensure("tiny", cache=tmp_path / "cache")
    assert root.parent == tmp_path / "cache" and root.name.startswith("tiny-")
    stamp = (root / "Human36M" / G.MARKER).stat().st_mtime_ns
    assert G.ensure("tiny", cache=tmp_path / "cache") == root  # cached: not regenerated
    assert (root / "Human36M" / G.MARKER).stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [root.name]  # no temporary folder left
    tr, te = H.Human36M(root, "mhp-p2", "train", subjects=(1,)), H.Human36M(root, "mhp-p2", "test", subjects=(9,))
    assert len(tr) == len(te) == 2 and tr.num_frames == 2 * 8 and tr.synthetic and te.summary()["moving_camera_streams"] == 1
    with pytest.raises(KeyError, match="unknown synthetic_h36m preset 'tabel2'"):
        G.ensure("tabel2", cache=tmp_path / "cache")


@pytest.mark.data
def test_real_human36m_if_present():
    from passbench.paths import resolve_data_root

    if not (resolve_data_root() / "Human36M" / "annotations").is_dir():
        pytest.skip("no Human3.6M under the data root")
    ds = H.Human36M(None, "mhp-p2", "test", actions=("Walking",), cameras=(1,))
    assert not ds.synthetic and len(ds) > 0 and all(st.contiguous for st in ds)
