#!/usr/bin/env bash
# Train MobileHumanPose LPSKI (width 0.5) and its gates on the SYNTHETIC Human3.6M preset "table2"
# (training subjects S1, 5, 6, 7, 8; passbench.datasets.synthetic_h36m), then copy each stage's final.pt
# into weights/pose/ with its sha256 (the files configs/table1, table2, figure4 load).
# This is the exact chain behind the committed weights; each stage resumes from $OUT/<stage>/last.pt.
#   usage: scripts/train_pose.sh [stage ...]   (default: task pass_p pass_f skipconv)
# Stages after `task` store only what differs from their init (gates; a fine-tuned backbone) with the
# init's sha256: weights/pose/pass_p.pt needs task.pt beside it, pass_f.pt needs pass_p.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-work_dirs/pose}
# One thread: on this project's 2 shared cores two OpenMP threads spin-wait for each other under load
# (a batch-8 MHP step took 2.5-4 s at 1 thread vs 11-15 s at 2: weights/pose/logs/time_pose_step.txt).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Gated layers (all methods alike): the stem conv, the last DeConv block (1x1 + 3x3 at 16x16) and the
# final 1x1 to the 18x32 heatmap channels at 32x32: 70 % of the model's MACs. Not the inverted-residual
# body: 1x1 / depthwise convs are memory-bound (docs/engine-benchmark.md). Patch 4 output px: an 8x8
# grid on the heatmap layer (the paper's Figure 1 grid), 4x4 at 16x16, 32x32 on the stem.
LAYERS="[backbone.first_conv.0, backbone.deconv2.0, backbone.deconv2.3, backbone.final_layer]"
COMMON=(task=pose model=mhp_lpski_w05 data_root=synthetic:table2 "sequences=[S1,S5,S6,S7,S8]" input_wh=[256,256]
        patch_size=4 threads=1)
# A stage starts from its predecessor's $OUT/<stage>/final.pt, or from the committed weights/pose/<stage>.pt
# when that stage was not re-run here (e.g. retrain the gates on the committed task model).
init() { if [ -f "$OUT/$1/final.pt" ]; then echo "$OUT/$1/final.pt"; else echo "weights/pose/$1.pt"; fi; }
stages=("$@"); [ ${#stages[@]} -eq 0 ] && stages=(task pass_p pass_f skipconv)
for s in "${stages[@]}"; do
  case $s in
    task)     base=""
              $PY -m passbench.train task --out "$OUT/task" "${COMMON[@]}" steps=2000 batch_size=8 lr=1e-3 \
                  scale_jitter=0.15 log_every=25 ckpt_every=100 ;;
    pass_p)   base=task.pt
              $PY -m passbench.train pass_p --out "$OUT/pass_p" "${COMMON[@]}" init="$(init task)" steps=500 \
                  batch_size=4 lr=1e-3 target_rate=0.5 rate_weight=1.0 log_every=10 ckpt_every=50 calib_pairs=32 \
                  "skip_params={embed_dim: 16, hidden: 64, layers: $LAYERS}" ;;
    pass_f)   base=pass_p.pt
              $PY -m passbench.train pass_f --out "$OUT/pass_f" "${COMMON[@]}" init="$(init pass_p)" steps=500 \
                  batch_size=8 lr=1e-4 log_every=10 ckpt_every=50 ;;
    skipconv) base=task.pt
              $PY -m passbench.train skipconv --out "$OUT/skipconv" "${COMMON[@]}" init="$(init task)" \
                  calib=per_layer calib_pairs=32 target_rate=0.5 "skip_params={gate: norm, layers: $LAYERS}" ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
  mkdir -p weights/pose/logs
  if [ -f "$OUT/$s/log.jsonl" ]; then cp "$OUT/$s/log.jsonl" "weights/pose/logs/$s.log.jsonl"; fi
  # The fine-tuned backbone delta of pass_f is stored in float16 (checked: no metric of the pose regress
  # case moves; weights/pose/README.md).
  half=0; [ "$s" = pass_f ] && half=1
  $PY - "$s" "$base" "$half" "$OUT" <<'PY'
import json, sys
from pathlib import Path

import torch

from passbench.train.common import publish_final

s, base, half, out = sys.argv[1], sys.argv[2] or None, sys.argv[3] == "1", sys.argv[4]
src = Path(out) / s / "final.pt"
dst = publish_final(src, f"weights/pose/{s}.pt", base, half)  # delta on base (sha256 checked) + SHA256SUMS
cfg = torch.load(src, map_location="cpu", weights_only=False)["config"]  # the resolved StageCfg (seed 0)
Path(f"weights/pose/logs/{s}.config.json").write_text(json.dumps(cfg, indent=1) + "\n")
print(f"{dst}: {dst.stat().st_size / 1e6:.2f} MB")
PY
done
