#!/usr/bin/env bash
# Train a plain-conv FairMOT and gates on every conv (the PASS paper's scheme) on the sample data's training
# halves, then copy each stage's final.pt into weights/everyconv/<model>/ with its sha256 (the files
# configs/everyconv/ loads; scripts/make_everyconv_configs.py writes those configs).
#   usage: scripts/train_everyconv.sh MODEL [stage ...]     MODEL: timm:resnet18 | fairmot_dla34_conv | ...
#          stages (default: task pass_p pass_f skipconv skipconv_gumbel; also pass_p_block: PASS-P pre-training
#          with one gate per residual block and head chain, make_skippable's follow, a passbench variant;
#          pass_p_half: PASS-P pre-training with gates at half resolution, PassGate pool=2, a passbench variant)
# Every stage resumes from $RUNS/<stage>/last.pt; re-running a finished stage republishes it. Stages after `task`
# store only what differs from their init (gates; a fine-tuned backbone) with the init's sha256: pass_p.pt,
# skipconv*.pt need task.pt beside them, pass_f.pt needs pass_p.pt.
# Environment (defaults in brackets): RUNS [runs/everyconv/<tag>], WEIGHTS [weights/everyconv/<tag>] (<tag> = MODEL
# with ':' as '-'); step counts TASK_STEPS [3000] PASS_P_STEPS [400] PASS_F_STEPS [300] GUMBEL_STEPS [200];
# CURVE_EVERY [250]: the task stage runs in chunks of this many steps and after each chunk scores the dense model
# on the eval split (scripts/everyconv_curve.py: MOTA against training steps and minutes, $RUNS/task/curve.jsonl,
# copied to $WEIGHTS/logs/), 0 = no curve; TRAIN_ARGS: extra key=value for every stage (e.g. threads=1);
# PY [.venv/bin/python].
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 MODEL [stage ...]" >&2; exit 2; }
MODEL=$1; shift
TAG=${MODEL//:/-}
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/everyconv/$TAG}
WEIGHTS=${WEIGHTS:-weights/everyconv/$TAG}
TASK_STEPS=${TASK_STEPS:-3000}; PASS_P_STEPS=${PASS_P_STEPS:-400}; PASS_F_STEPS=${PASS_F_STEPS:-300}
GUMBEL_STEPS=${GUMBEL_STEPS:-200}; CURVE_EVERY=${CURVE_EVERY:-250}
read -r -a EXTRA <<< "${TRAIN_ARGS:-}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# The sample protocol's input; random init (passbench downloads no weights).
COMMON=(model="$MODEL" input_wh=[384,224] pretrained=null "${EXTRA[@]}")
# Gated layers, all methods alike: every conv but the stem and the convs whose output grid at 384x224 is under 16
# patches at the largest patch (8, else 4) that reaches 16 (passbench.skip.convplan; the per-layer table and why
# these patch sizes: docs/everyconv.md). PLAN = {patch_size: ..., exclude: [...]}, computed from the model.
PLAN=$($PY scripts/everyconv_layers.py "$MODEL" --params)
# sort_keys=False: the first matching glob of a patch_size mapping wins, so "*" must stay last
PATCH=$($PY -c 'import sys, yaml; print(yaml.safe_dump(yaml.safe_load(sys.argv[1])["patch_size"], default_flow_style=True, sort_keys=False, width=100000).strip())' "$PLAN")
EXCLUDE=$($PY -c 'import sys, yaml; print(yaml.safe_dump(yaml.safe_load(sys.argv[1])["exclude"], default_flow_style=True, width=100000).strip())' "$PLAN")
# the light model's PASS-P recipe (scripts/train_sample.sh), pair_gap=8 included (why: there); $1: extra skip_params
pass_p() { $PY -m passbench.train pass_p --out "$out" "${COMMON[@]}" init="$(init task)" steps="$PASS_P_STEPS" \
               batch_size=4 lr=1e-3 target_rate=0.5 rate_weight=1.0 log_every=10 ckpt_every=50 calib_pairs=32 pair_gap=8 \
               "patch_size=$PATCH" "skip_params={embed_dim: 16, hidden: 64, exclude: $EXCLUDE$1}"; }
init() { if [ -f "$RUNS/$1/final.pt" ]; then echo "$RUNS/$1/final.pt"; else echo "$WEIGHTS/$1.pt"; fi; }
logs() { mkdir -p "$WEIGHTS/logs"; cp "$RUNS/$1/log.jsonl" "$WEIGHTS/logs/$1.log.jsonl"
         cp "$RUNS/$1/config.json" "$WEIGHTS/logs/$1.config.json"
         if [ -f "$RUNS/$1/curve.jsonl" ]; then cp "$RUNS/$1/curve.jsonl" "$WEIGHTS/logs/$1.curve.jsonl"; fi; }
stages=("$@"); [ ${#stages[@]} -eq 0 ] && stages=(task pass_p pass_f skipconv skipconv_gumbel)
for s in "${stages[@]}"; do
  out="$RUNS/$s"
  case $s in
    task)     base=""
              # The light model's recipe (scripts/train_sample.sh): Adam 4e-4, lr x0.1 after 80 % of the steps.
              args=(task --out "$out" "${COMMON[@]}" steps="$TASK_STEPS" batch_size=8 lr=4e-4 log_every=10 ckpt_every=50)
              if [ "$CURVE_EVERY" -gt 0 ]; then
                for ((n = CURVE_EVERY; n < TASK_STEPS + CURVE_EVERY; n += CURVE_EVERY)); do
                  stop=$(( n < TASK_STEPS ? n : TASK_STEPS ))
                  $PY -m passbench.train "${args[@]}" --stop-at "$stop"
                  $PY scripts/everyconv_curve.py "$out" --model "$MODEL"
                done
              else
                $PY -m passbench.train "${args[@]}"
              fi ;;
    pass_p)   base=task.pt
              pass_p "" ;;
    pass_p_block) base=task.pt
              # pass_p's recipe with {follower: leader}, one gate per residual block and head chain
              # (passbench.skip.convplan.block_followers): each leader learns from every conv it decides for
              pass_p ", follow: $($PY scripts/everyconv_layers.py "$MODEL" --follow)" ;;
    pass_p_half) base=task.pt
              # pass_p's recipe with each gate seeing its inputs average-pooled 2x2 (PassGate pool): a quarter
              # of the patch embedding's MACs, the same patch grid and decisions per patch
              pass_p ", pool: 2" ;;
    pass_f)   base=pass_p.pt
              # lr 4e-5 = where the task stage ended (scripts/train_sample.sh says why)
              $PY -m passbench.train pass_f --out "$out" "${COMMON[@]}" init="$(init pass_p)" steps="$PASS_F_STEPS" \
                  batch_size=8 lr=4e-5 log_every=10 ckpt_every=50 ;;
    skipconv) base=task.pt
              $PY -m passbench.train skipconv --out "$out" "${COMMON[@]}" init="$(init task)" calib=per_layer \
                  calib_pairs=16 target_rate=0.5 "patch_size=$PATCH" "skip_params={gate: norm, exclude: $EXCLUDE}" ;;
    skipconv_gumbel) base=task.pt
              $PY -m passbench.train skipconv --out "$out" "${COMMON[@]}" init="$(init task)" steps="$GUMBEL_STEPS" \
                  batch_size=8 lr=2e-5 gate_lr_scale=2500 target_rate=0.5 budget_weight=1.0 log_every=10 ckpt_every=50 \
                  "patch_size=$PATCH" "skip_params={gate: gumbel, exclude: $EXCLUDE}" ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
  mkdir -p "$WEIGHTS"
  [ -f "$out/log.jsonl" ] && logs "$s"
  # float32 throughout (a float16 backbone moved MOTA on the light model: weights/sample/README.md)
  $PY -c 'import sys; from passbench.train.common import publish_final as p
d = p(f"{sys.argv[1]}/final.pt", f"{sys.argv[2]}/{sys.argv[3]}.pt", sys.argv[4] or None, False)
print(f"{d}: {d.stat().st_size / 1e6:.1f} MB")' "$RUNS/$s" "$WEIGHTS" "$s" "$base"
done
