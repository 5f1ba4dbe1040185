"""Training data: split disjointness, augmentation keeps boxes on their pixels, rank partitioning."""

import numpy as np
import pytest

from passbench.train.data import (EVAL_ONLY_SEQUENCES, TRAIN_SEQUENCES, MotSamples, StepBatches, assert_disjoint,
                                  augment, synthetic_store)


def test_assert_disjoint():
    assert_disjoint({"A": range(1, 11)}, {"A": range(11, 21), "B": range(1, 5)})
    with pytest.raises(AssertionError, match="A: 1 frames both"):
        assert_disjoint({"A": range(1, 11)}, {"A": range(10, 21)})


def test_sample_data_split_is_disjoint_and_complete():
    mot = pytest.importorskip("passbench.datasets.mot")
    from passbench.train.data import eval_frames, train_frames

    ev = eval_frames()
    tr = {n: train_frames(n)[1] for n in TRAIN_SEQUENCES}
    assert_disjoint(tr, ev)
    for n in TRAIN_SEQUENCES:
        seq = mot.load_sequence(n)
        total = int(seq.gt["frame"].max())
        assert set(tr[n]) | set(ev[n]) == set(range(1, total + 1)), n
        assert max(tr[n]) < min(ev[n])  # first half trains, second half evaluates
    assert set(EVAL_ONLY_SEQUENCES) <= set(ev) and not set(EVAL_ONLY_SEQUENCES) & set(tr)


@pytest.mark.parametrize("seed", range(4))
def test_augment_moves_boxes_with_pixels(seed):
    s = synthetic_store(n=2, wh=(96, 64))
    imgs, boxes, keep = augment([s.images[0], s.images[1]], s.boxes[1], np.random.default_rng(seed), True, 0.15)
    assert len(keep) == 2
    for x1, y1, x2, y2 in boxes:  # inner part of each transformed box is the red box colour
        cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
        patch = imgs[1][cy - 2 : cy + 3, cx - 2 : cx + 3].reshape(-1, 3).mean(0)
        assert patch[0] > 200 and patch[1] < 90, (seed, patch)


def test_step_batches_partition_ranks():
    samples = MotSamples([synthetic_store(n=9)], pairs=True)
    assert len(samples) == 8  # consecutive pairs only
    r0, r1 = StepBatches(samples, 4, seed=3, rank=0, world=2), StepBatches(samples, 4, seed=3, rank=1, world=2)
    epoch0 = [i for s in range(2) for i in r0.indices(s) + r1.indices(s)]
    assert sorted(epoch0) == list(range(8))  # one epoch = every pair once across both ranks
    assert r0.indices(5) == StepBatches(samples, 4, seed=3, rank=0, world=2).indices(5)  # deterministic
    b = r0(0)
    assert b["img"].shape == (2, 3, 48, 64) and b["prev"].shape == b["img"].shape and b["hm"].shape == (2, 1, 12, 16)


def test_gap_pairs_reach_back_at_most_max_gap_frames_within_a_run():
    # pair_gap: the previous frame of a pair is g = 1..max_gap frames back, drawn per sample, never across a
    # break in the frame ids (two runs here: frames 1-4 and 10-13); max_gap 1 is the consecutive pair.
    from passbench.train.data import FrameStore, to_tensor

    ids = np.array([1, 2, 3, 4, 10, 11, 12, 13])
    imgs = np.stack([np.full((8, 8, 3), 10 * k, np.uint8) for k in range(len(ids))])  # frame k has value 10k
    store = FrameStore("S", ids, imgs, [np.zeros((0, 4), np.float32)] * 8, [np.zeros(0, np.int64)] * 8)
    gaps = {}
    for max_gap in (1, 3):
        smp = MotSamples([store], pairs=True, flip=False, scale_jitter=0.0, max_gap=max_gap)
        seen = set()
        for i, (_, j) in enumerate(smp.items):
            for seed in range(20):
                it = smp.get(i, np.random.default_rng(seed))
                assert np.allclose(it["img"], to_tensor(imgs[j]))
                g = [k for k in range(1, j + 1) if np.allclose(it["prev"], to_tensor(imgs[j - k]))]
                assert len(g) == 1 and ids[j] - ids[j - g[0]] == g[0], (j, g)  # same run, g frames back
                seen.add(g[0])
        gaps[max_gap] = seen
    assert gaps == {1: {1}, 3: {1, 2, 3}}
    with pytest.raises(ValueError, match="max_gap"):
        MotSamples([store], pairs=True, max_gap=0)
