#!/usr/bin/env bash
# Train the light model and its gates on the sample data's training halves (docs/training.md), then
# copy each stage's final.pt into weights/sample/ with its sha256 (the files the Table 3 / trade-off configs
# load). This is the exact chain behind the committed weights; each stage resumes from runs/<stage>/last.pt.
#   usage: scripts/train_sample.sh [stage ...]   (default: task pass_p pass_f skipconv skipconv_gumbel)
# Stages after `task` store only what differs from their init (gates; a fine-tuned backbone), with the
# init's sha256: weights/sample/pass_p.pt needs task.pt beside it, pass_f.pt needs pass_p.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# Gated layers (all methods alike): the stride-4 neck and the heads' 3x3 convs and the id 1x1 (53% of the
# model's MACs). Not the MobileNetV2 body: its 1x1 / depthwise convs are memory-bound, and a per-layer gate
# there costs more time than the skipped MACs save (docs/engine-benchmark.md); not the 64->1/2/4 head
# outputs, whose gate would cost more MACs than the conv itself. PASS gates on grids of fewer than 16
# patches (the stride-16/32 neck convs at 384x224) never decide (PassGate min_patches).
LAYERS="[neck.*, hm.0, wh.0, reg.0, id.0, id.2]"
COMMON=(input_wh=[384,224] patch_size=8)
# A stage starts from its predecessor's runs/<stage>/final.pt, or from the committed weights/sample/<stage>.pt
# when that stage was not re-run here (e.g. retrain the gates on the committed task model).
init() { if [ -f "runs/$1/final.pt" ]; then echo "runs/$1/final.pt"; else echo "weights/sample/$1.pt"; fi; }
# Each stage's training log and resolved config go beside the weights (weights/sample/logs/), committed.
logs() { mkdir -p weights/sample/logs; cp "runs/$1/log.jsonl" "weights/sample/logs/$1.log.jsonl"
         cp "runs/$1/config.json" "weights/sample/logs/$1.config.json"; }
stages=("$@"); [ ${#stages[@]} -eq 0 ] && stages=(task pass_p pass_f skipconv skipconv_gumbel)
for s in "${stages[@]}"; do
  case $s in
    task)     base=""
              $PY -m passbench.train task --out runs/task "${COMMON[@]}" steps=700 batch_size=8 lr=4e-4 log_every=10 ckpt_every=50 ;;
    pass_p)   base=task.pt
              # pair_gap=8: pairs (t-g, t), g drawn from 1..8 (the paper's pairs are consecutive): on consecutive pairs
              # the learned allocation scored 44.2 MOTA at 41.6 % skip without refresh against 51.2 at 42.8 % on
              # gap pairs (configs/ablation/pass_p_gap1_r40.yaml, tradeoff/pass_p_r40.yaml; docs/training.md)
              $PY -m passbench.train pass_p --out runs/pass_p "${COMMON[@]}" init=$(init task) steps=400 batch_size=4 lr=1e-3 \
                  target_rate=0.5 rate_weight=1.0 log_every=10 ckpt_every=50 calib_pairs=32 pair_gap=8 \
                  "skip_params={embed_dim: 16, hidden: 64, layers: $LAYERS}" ;;
    pass_f)   base=pass_p.pt
              # lr 4e-5 = where the task stage ended (4e-4 x 0.1): at 1e-4 the same recipe with nothing skipped
              # lost 3.6 MOTA on its own (configs/ablation/dense_ft_r00.yaml; weights/sample/logs/pass_f_lr1e-4.log.jsonl)
              $PY -m passbench.train pass_f --out runs/pass_f "${COMMON[@]}" init=$(init pass_p) steps=300 batch_size=8 lr=4e-5 \
                  log_every=10 ckpt_every=50 ;;
    skipconv) base=task.pt
              $PY -m passbench.train skipconv --out runs/skipconv "${COMMON[@]}" init=$(init task) calib=per_layer calib_pairs=16 \
                  target_rate=0.5 "skip_params={gate: norm, layers: $LAYERS}" ;;
    skipconv_gumbel) base=task.pt
              $PY -m passbench.train skipconv --out runs/skipconv_gumbel "${COMMON[@]}" init=$(init task) steps=200 batch_size=8 \
                  lr=2e-5 gate_lr_scale=2500 target_rate=0.5 budget_weight=1.0 log_every=10 ckpt_every=50 \
                  "skip_params={gate: gumbel, layers: $LAYERS}" ;;
    # Ablations (not in the default list; their weights are not committed, their logs and records are):
    # PASS-P without the target-rate term, and PASS-P with the authors' gate sizes (PASS_PAPER_GATE: embedding
    # 256, 4 mixer blocks, depthwise kernel 9, pooled affine head with 4096 hidden units; fixed 384x224 grid).
    pass_p_rate0) base=task.pt
              $PY -m passbench.train pass_p --out runs/pass_p_rate0 "${COMMON[@]}" init=$(init task) steps=150 batch_size=4 lr=1e-3 \
                  target_rate=0.5 rate_weight=0.0 log_every=10 ckpt_every=50 calib_pairs=32 pair_gap=8 \
                  "skip_params={embed_dim: 16, hidden: 64, layers: $LAYERS}"
              logs "$s"; continue ;;
    pass_p_gap1) base=task.pt
              # PASS-P on consecutive pairs (pair_gap=1, the paper's pairs), otherwise as pass_p
              $PY -m passbench.train pass_p --out runs/pass_p_gap1 "${COMMON[@]}" init=$(init task) steps=400 batch_size=4 \
                  lr=1e-3 target_rate=0.5 rate_weight=1.0 log_every=10 ckpt_every=50 calib_pairs=32 \
                  "skip_params={embed_dim: 16, hidden: 64, layers: $LAYERS}"
              logs "$s"; continue ;;
    pass_p_t80) base=task.pt
              # pass_p with the rate term's target at 0.8: the allocation the gates learn at a higher skip level
              $PY -m passbench.train pass_p --out runs/pass_p_t80 "${COMMON[@]}" init=$(init task) steps=400 batch_size=4 \
                  lr=1e-3 target_rate=0.8 rate_weight=1.0 log_every=10 ckpt_every=50 calib_pairs=32 pair_gap=8 \
                  "skip_params={embed_dim: 16, hidden: 64, layers: $LAYERS}"
              logs "$s"; continue ;;
    skipconv_gumbel_free) base=task.pt
              # The authors' free gate conv (weights of any sign) instead of the monotone one (GumbelGate).
              $PY -m passbench.train skipconv --out runs/skipconv_gumbel_free "${COMMON[@]}" init=$(init task) steps=200 \
                  batch_size=8 lr=2e-5 gate_lr_scale=2500 target_rate=0.5 budget_weight=1.0 log_every=10 ckpt_every=50 \
                  "skip_params={gate: gumbel, monotone: false, layers: $LAYERS}"
              logs "$s"; continue ;;
    pass_p_paper) base=task.pt
              $PY -m passbench.train pass_p --out runs/pass_p_paper "${COMMON[@]}" init=$(init task) steps=200 batch_size=4 lr=1e-3 \
                  target_rate=0.5 rate_weight=1.0 log_every=10 ckpt_every=50 calib_pairs=32 pair_gap=8 \
                  "skip_params={embed_dim: 256, depth: 4, kernel_size: 9, hidden: 4096, head: linear, input_shape: [3, 224, 384], layers: $LAYERS}"
              logs "$s"; continue ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
  mkdir -p weights/sample
  [ -f "runs/$s/log.jsonl" ] && logs "$s"
  # Everything in float32: a float16 copy of the PASS-F backbone moved MOTA on the regress split (55.4 vs
  # 54.6 %, weights/sample/README.md), so no stage is committed in half precision.
  half=0
  $PY -c 'import sys; from passbench.train.common import publish_final as p
d = p(f"runs/{sys.argv[1]}/final.pt", f"weights/sample/{sys.argv[1]}.pt", sys.argv[2] or None, sys.argv[3] == "1")
print(f"{d}: {d.stat().st_size / 1e6:.1f} MB")' "$s" "$base" "$half"
done
