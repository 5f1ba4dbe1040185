#!/usr/bin/env bash
# The paper's training recipes (docs/paper-scale.md), on one GPU: gates and fine-tuning on MOT17's training
# halves over the official FairMOT DLA-34, the five dense baselines of Table 3, and the pose rows of Table 1
# over an MHP snapshot. Each stage's final.pt is copied into runs/paper/weights/<stage>.pt with its sha256
# (stages after the imported checkpoint store only what differs from their init, as weights/sample/ does);
# configs/paper/ load them from there. Each stage resumes from runs/paper/<stage>/last.pt.
#   usage: scripts/train_paper.sh [stage ...]   (default: task pass_p pass_f skipconv skipconv_gumbel)
#   stages: task pass_p pass_f skipconv skipconv_gumbel | dla34 hrnet_w32 regnety_040 fpn_resnet34 hardnet85 |
#           pose_task pose_pass_p pose_pass_f pose_skipconv
# Needs: FAIRMOT_DLA34 (the official fairmot_dla34.pth), PASSBENCH_DATA (a root holding MOT17/train, e.g. from
# `passbench data fetch MOT17`); for the pose stages MHP_SNAPSHOT and a root holding Human36M/ (H36M_ROOT).
# DEVICE (default cuda) is passed as --device.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
OUT=runs/paper
W=$OUT/weights
MOT17="[MOT17-02-SDP, MOT17-04-SDP, MOT17-05-SDP, MOT17-09-SDP, MOT17-10-SDP, MOT17-11-SDP, MOT17-13-SDP]"
# FairMOT's optimiser (src/lib/opts.py): Adam, lr 1e-4 at batch 12, step drop x0.1; input 1088x608.
# The MOT17 root comes from $PASSBENCH_DATA (passbench.paths), as for the rows.
MOT=(model=fairmot_dla34 input_wh=[1088,608] "sequences=$MOT17" patch_size=8 log_every=20 ckpt_every=200)
# Pose: Human3.6M's training subjects (MHP/3DMPPE protocol 2: S1, S5, S6, S7, S8); input_range 255 as the snapshot.
pose() { need H36M_ROOT "a root holding Human36M/"
         POSE=(task=pose model=mhp_lpski input_wh=[256,256] "data_root=$H36M_ROOT" "model_kwargs={input_range: 255}"
               patch_size=8 log_every=20 ckpt_every=200); }
train() { $PY -m passbench.train "$1" --device "$DEVICE" --out "$OUT/$2" "${@:3}"; }
publish() {  # publish <stage> <base file name beside it or "">
  mkdir -p "$W"
  $PY -c 'import sys; from passbench.train.common import publish_final as p
d = p(f"runs/paper/{sys.argv[1]}/final.pt", f"runs/paper/weights/{sys.argv[1]}.pt", sys.argv[2] or None)
print(f"{d}: {d.stat().st_size / 1e6:.1f} MB")' "$1" "$2"
}
need() { if [ -z "${!1:-}" ]; then echo "train_paper.sh: set $1 ($2)" >&2; exit 2; fi; }
stages=("$@"); [ ${#stages[@]} -eq 0 ] && stages=(task pass_p pass_f skipconv skipconv_gumbel)
for s in "${stages[@]}"; do
  case $s in
    task)     need FAIRMOT_DLA34 "the official fairmot_dla34.pth"
              $PY -m passbench.train.official "$FAIRMOT_DLA34" --model fairmot_dla34 --input-wh 1088 608 --out $OUT/task
              publish task "" ;;
    pass_p)   train pass_p pass_p "${MOT[@]}" init=$W/task.pt steps=4000 batch_size=4 lr=1e-3 target_rate=0.5 \
                  rate_weight=1.0 calib_pairs=32 "skip_params={embed_dim: 16, hidden: 64}"
              publish pass_p task.pt ;;
    pass_f)   train pass_f pass_f "${MOT[@]}" init=$W/pass_p.pt steps=4000 batch_size=8 lr=1e-5
              publish pass_f pass_p.pt ;;
    skipconv) train skipconv skipconv "${MOT[@]}" init=$W/task.pt calib=per_layer calib_pairs=32 target_rate=0.5 \
                  "skip_params={gate: norm}"
              publish skipconv task.pt ;;
    skipconv_gumbel)
              train skipconv skipconv_gumbel "${MOT[@]}" init=$W/task.pt steps=4000 batch_size=8 lr=1e-5 \
                  gate_lr_scale=2500 target_rate=0.5 budget_weight=1.0 "skip_params={gate: gumbel}"
              publish skipconv_gumbel task.pt ;;
    dla34|hrnet_w32|regnety_040|fpn_resnet34)  # ImageNet-initialised bodies (timm / torchvision loading)
              train task "$s" "${MOT[@]}" model=$s pretrained=imagenet steps=12000 batch_size=8 lr=1e-4
              publish "$s" "" ;;
    hardnet85) train task "$s" "${MOT[@]}" model=$s pretrained=null steps=12000 batch_size=8 lr=1e-4  # no ImageNet weights
              publish "$s" "" ;;
    pose_task) need MHP_SNAPSHOT "a MobileHumanPose snapshot trained with upstream's code"
              $PY -m passbench.train.official "$MHP_SNAPSHOT" --model mhp_lpski --out $OUT/pose_task
              publish pose_task "" ;;
    pose_pass_p) pose; train pass_p pose_pass_p "${POSE[@]}" init=$W/pose_task.pt steps=4000 batch_size=16 lr=1e-3 \
                  target_rate=0.5 rate_weight=1.0 calib_pairs=32 "skip_params={embed_dim: 16, hidden: 64}"
              publish pose_pass_p pose_task.pt ;;
    pose_pass_f) pose; train pass_f pose_pass_f "${POSE[@]}" init=$W/pose_pass_p.pt steps=4000 batch_size=16 lr=1e-5
              publish pose_pass_f pose_pass_p.pt ;;
    pose_skipconv) pose; train skipconv pose_skipconv "${POSE[@]}" init=$W/pose_task.pt calib=per_layer calib_pairs=32 \
                  target_rate=0.5 "skip_params={gate: norm}"
              publish pose_skipconv pose_task.pt ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
done
