"""MOTChallenge loaders on the sample data: counts, frames, warnings, error paths, half split, I/O."""

import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from passbench.datasets import mot, scenes
from passbench.datasets.motio import COLUMNS, DTYPES, MOTFormatError, read_mot_txt, write_mot_results
from passbench.datasets.video import FrameDecodeError, count_video_frames, video_fps
from passbench.paths import DataRootError, resolve_data_root

ROOT = resolve_data_root()
SAMPLE = [  # (name, frames present, seqLength, gt boxes, gt ids or None, fps, (H, W)) from data/README.md
    ("MOT15/train/PETS09-S2L1", 795, 795, 4650, 19, 7, (576, 768)),
    ("MOT15/train/TUD-Campus", 71, 71, 359, 8, 25, (480, 640)),
    ("MOT15/train/TUD-Stadtmitte", 179, 179, 1156, 10, 25, (480, 640)),
    ("MOT17-mini/train/MOT17-02-FRCNN", 4, 600, None, None, 30, (1080, 1920)),
    ("MOT17-mini/train/MOT17-04-FRCNN", 8, 1050, None, None, 30, (1080, 1920)),
]


def _load(name, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the MOT17-mini cut warning has its own test
        return mot.load_sequence(name, **kw)


@pytest.mark.parametrize("name,n,seq_len,boxes,ids,fps,hw", SAMPLE, ids=[s[0].split("/")[-1] for s in SAMPLE])
def test_sample_sequences(name, n, seq_len, boxes, ids, fps, hw):
    seq = _load(name)
    assert (seq.num_frames, seq.seq_length, seq.frame_rate) == (n, seq_len, fps)
    assert (seq.height, seq.width) == hw
    gt = seq.gt
    assert list(gt.columns) == list(COLUMNS) and gt.dtypes.astype(str).to_dict() == DTYPES
    if boxes is not None:
        assert len(gt) == boxes and gt["id"].nunique() == ids
        assert seq.benchmark == "MOT15" and (gt["cls"] == 1).all() and (gt["vis"] == 1).all()
    else:
        assert seq.benchmark == "MOT17" and gt["frame"].max() == n and gt["cls"].isin([1, 2, 7, 8, 12]).any()
    assert seq.det is not None and seq.det["frame"].max() <= n
    got = list(seq.frames(1, 3))  # only two frames: the decoding tests stay short
    assert [f for f, _ in got] == [1, 2]
    for _, rgb in got:
        assert rgb.shape == (*hw, 3) and rgb.dtype == np.uint8


def test_name_forms_resolve_to_the_same_folder(tmp_path):
    a = mot.find_sequence("PETS09-S2L1")
    assert a == mot.find_sequence("MOT15/train/PETS09-S2L1") == mot.find_sequence(str(a))
    assert mot.find_sequence("PETS09-S2L1", data_root=ROOT) == a
    assert mot.list_sequences("MOT15", "train") == [f"MOT15/train/{s}" for s in
                                                     ("PETS09-S2L1", "TUD-Campus", "TUD-Stadtmitte")]
    # an official MOT17 layout (MOT17/train/<seq>) found by bare name under another root
    (tmp_path / "MOT17" / "train").mkdir(parents=True)
    os.symlink(ROOT / "MOT17-mini/train/MOT17-04-FRCNN", tmp_path / "MOT17/train/MOT17-04-FRCNN")
    seq = _load("MOT17-04-FRCNN", data_root=tmp_path)
    assert seq.path.parent.parent.name == "MOT17" and seq.num_frames == 8
    with pytest.raises(mot.SequenceError, match="NOPE.*not found"):
        mot.load_sequence("NOPE", data_root=tmp_path)


def test_missing_data_root(tmp_path, monkeypatch):
    with pytest.raises(DataRootError, match="not a directory"):
        mot.load_sequence("PETS09-S2L1", data_root=tmp_path / "absent")
    monkeypatch.setenv("PASSBENCH_DATA", str(tmp_path / "absent"))
    with pytest.raises(DataRootError, match="PASSBENCH_DATA"):
        mot.list_sequences("MOT15")


def test_cut_sequence_warns_with_both_counts():
    with pytest.warns(UserWarning, match=r"MOT17-02-FRCNN is cut: 4 frames present, seqinfo.ini seqLength 600"):
        seq = mot.load_sequence("MOT17-02-FRCNN")
    assert (seq.num_frames, seq.seq_length) == (4, 600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # complete sequences do not warn
        mot.load_sequence("TUD-Campus")


def test_pets_fps_from_seqinfo_not_container():
    seq = _load("PETS09-S2L1")
    assert video_fps(seq.video) == 10 and seq.frame_rate == 7
    assert count_video_frames(seq.video) == 795


def test_video_start_frame_matches_decode_from_start_and_opencv():
    cv2 = pytest.importorskip("cv2")
    seq = _load("TUD-Campus")
    from_start = dict(seq.frames(1, 8))
    late = list(seq.frames(5, 8))
    assert [f for f, _ in late] == [5, 6, 7]
    for f, rgb in late:
        np.testing.assert_array_equal(rgb, from_start[f])
    cap = cv2.VideoCapture(str(seq.video))  # independent decoder: OpenCV frame i (0-based) == MOT frame i + 1
    for _ in range(4):
        cap.read()
    ok, bgr = cap.read()
    cap.release()
    assert ok
    diff = np.abs(bgr[:, :, ::-1].astype(int) - from_start[5].astype(int))
    assert diff.mean() < 2.0, diff.mean()  # same codec, possibly a different YUV->RGB rounding
    np.testing.assert_array_equal(seq.frame(5), from_start[5])
    with pytest.raises(ValueError, match="outside"):
        next(seq.frames(70, 80))


def test_img1_frame_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    seq = _load("MOT17-04-FRCNN")
    np.testing.assert_array_equal(seq.frame(3), cv2.imread(str(seq.img_dir / "000003.jpg"))[:, :, ::-1])


def _copy_seq(src, dst, frames=()):
    dst.mkdir(parents=True)
    for sub in ("seqinfo.ini", "gt", "det"):
        s = src / sub
        (shutil.copytree if s.is_dir() else shutil.copy)(s, dst / sub)
    if frames:
        (dst / "img1").mkdir()
        for f in frames:
            shutil.copy(src / "img1" / f"{f:06d}.jpg", dst / "img1")
    return dst


def test_corrupt_and_missing_image_frames_name_file_and_frame(tmp_path):
    d = _copy_seq(ROOT / "MOT17-mini/train/MOT17-04-FRCNN", tmp_path / "MOT17/train/MOT17-04-FRCNN",
                  frames=[1, 2, 3, 4, 6])
    (d / "img1" / "000003.jpg").write_bytes(b"not a jpeg at all")
    seq = _load(str(d))
    assert seq.num_frames == 5
    got = seq.frames(1)
    assert [next(got)[0], next(got)[0]] == [1, 2]
    with pytest.raises(FrameDecodeError, match=r"000003\.jpg: MOT frame 3 could not be decoded"):
        next(got)
    with pytest.raises(FrameDecodeError, match=r"000005\.jpg: MOT frame 5 is missing"):
        list(seq.frames(4))


def test_truncated_video_names_file_and_frame(tmp_path):
    src = ROOT / "MOT15/train/PETS09-S2L1"
    d = _copy_seq(src, tmp_path / "PETS09-S2L1")
    data = (src / "PETS09-S2L1.avi").read_bytes()
    (d / "PETS09-S2L1.avi").write_bytes(data[: len(data) // 40])  # AVI header still says 795 frames
    seq = _load(str(d))
    with pytest.raises(FrameDecodeError, match=r"PETS09-S2L1\.avi: .*MOT frame \d+ .*(missing|decode)"):
        for _ in seq.frames(1):
            pass
    (d / "PETS09-S2L1.avi").unlink()
    with pytest.raises(mot.SequenceError, match="neither .*img1 nor a video"):
        mot.load_sequence(str(d))


@pytest.mark.parametrize("kind,text,line,why", [
    ("gt", "1,1,10,10,5,5,1,1,1\n2,1,10,10,5,5,1,1\n", 2, "need 9 or 10 columns, got 8"),
    ("gt", "1,1,10,10,5,5,1,1,1\n\n3,1,10,x,5,5,1,1,1\n", 3, "non-numeric"),
    ("gt", "1,1,10,10,5,5,1,1,1\n1,2,10,10,5,5,1,-1,-1,-1\n", 2, "10 columns where earlier rows have 9"),
    ("det", "1.5,-1,10,10,5,5,0.9\n", 1, "frame must be an integer"),
    ("results", "1,1,10,10,5,5,1,-1,-1,-1\n0,1,10,10,5,5,1,-1,-1,-1\n", 2, "frame must be >= 1"),
    ("results", "1,1,10,nan,5,5\n", 1, "column 4 is not finite"),
])
def test_malformed_rows_name_file_and_line(tmp_path, kind, text, line, why):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(MOTFormatError, match=rf"bad\.txt:{line}: .*{why}"):
        read_mot_txt(p, kind)


def test_formats_normalise():
    d = ROOT / "MOT17-mini/train/MOT17-02-FRCNN"
    det = read_mot_txt(d / "det/det.txt", "det")  # MOT17-FRCNN det has 7 columns
    raw = pd.read_csv(d / "det/det.txt", header=None)
    assert raw.shape[1] == 7 and len(det) == len(raw)
    np.testing.assert_array_equal(det[["x", "y", "w", "h", "conf"]].to_numpy(), raw.iloc[:, 2:7].to_numpy())
    gt = read_mot_txt(d / "gt/gt.txt", "gt")
    raw = pd.read_csv(d / "gt/gt.txt", header=None)
    np.testing.assert_array_equal(gt[["conf", "cls", "vis"]].to_numpy(), raw.iloc[:, 6:9].to_numpy())
    pets = read_mot_txt(ROOT / "MOT15/train/PETS09-S2L1/det/det.txt", "det")
    assert (pets["cls"] == -1).all() and len(pets) == len(pd.read_csv(ROOT / "MOT15/train/PETS09-S2L1/det/det.txt",
                                                                      header=None))


def test_write_results_round_trip_and_atomic(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"frame": [2, 1, 1], "id": [5, 9, 3], "x": rng.uniform(0, 500, 3), "y": rng.uniform(0, 500, 3),
                       "w": [10.25, 3.0, 7.1], "h": [20.0, 6.5, 1 / 3], "conf": [0.9, 1.0, 0.5]})
    p = write_mot_results(tmp_path / "out" / "seq.txt", df)
    lines = p.read_text().splitlines()
    assert all(ln.endswith(",-1,-1,-1") and ln.count(",") == 9 for ln in lines)
    assert [ln.split(",")[:2] for ln in lines] == [["1", "3"], ["1", "9"], ["2", "5"]]
    back = read_mot_txt(p, "results")
    want = df.sort_values(["frame", "id"]).reset_index(drop=True)
    np.testing.assert_array_equal(back[list(want.columns)].to_numpy(), want.to_numpy())  # exact floats
    assert (back["cls"] == -1).all() and os.listdir(p.parent) == ["seq.txt"]
    with pytest.raises(ValueError, match="id 9 appears twice in frame 1"):
        write_mot_results(p, pd.concat([df, df.iloc[[1]]]))
    assert read_mot_txt(p, "results").shape == back.shape  # the failed write left the old file whole


def test_half_split_fairmot():
    # FairMOT src/data/mot17.half: first halves of 02/04/05/09/10/11/13 are 300/525/418/262/327/450/375 frames
    firsts = [len(mot.half_split(s.frames)[0]) for s in scenes.MOT17_TRAIN.values()]
    assert firsts == [300, 525, 418, 262, 327, 450, 375]
    tr, va = mot.half_split(600)
    assert (tr, va) == (range(1, 301), range(301, 601))  # track_half.py: validation = N/2+1..N
    seq = _load("PETS09-S2L1")
    tr, va = mot.half_split(seq)
    assert tr[-1] + 1 == va[0] and tr[0] == 1 and va[-1] == 795
    g = mot.restrict_frames(seq.gt, va)
    assert g["frame"].min() == va[0] and g["frame"].max() == 795
    assert len(g) + len(mot.restrict_frames(seq.gt, tr)) == len(seq.gt)
    assert len(mot.restrict_frames(seq.gt, [1, 3])) == int(seq.gt["frame"].isin([1, 3]).sum())


def test_scene_metadata():
    cols = scenes.table4_sequences()
    assert list(cols) == list(scenes.TABLE4_COLUMNS)
    assert list(cols.values()) == ["MOT17-02", "MOT17-04", "MOT17-13", "MOT17-11"]
    for name in ("MOT17-02-FRCNN", "MOT17-04-FRCNN"):  # the sample seqinfo.ini files verify fps / size / length
        info, s = _load(name).info, scenes.scene_info(name)
        assert (s.fps, s.width, s.height, s.frames) == (info.frame_rate, info.width, info.height, info.seq_length)
    assert scenes.scene_info("MOT17-04").night and scenes.scene_info("MOT17-13").camera == "moving"
    assert scenes.PROVENANCE["viewpoint"] == scenes.UNVERIFIED
    with pytest.raises(KeyError, match="not a MOT17 train"):
        scenes.scene_info("MOT17-01")
