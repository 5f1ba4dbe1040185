#!/usr/bin/env bash
# The prepared GPU check (docs/paper-scale.md), under 8 minutes on one GPU, each step bounded by a timeout:
#   (a) the engine's exactness tests and the device tests on CUDA (pytest -m gpu);              <= 2 min
#   (b) every Table 3 row's forward timed, dense twin and method, fp32 and fp16, at 576x320 and 1088x608:
#       the sample rows (configs/table3/: the light model with its trained gates, the heavy backbones dense)
#       and the paper's FairMOT DLA-34 with every conv gated (configs/paper/table3/ fairmot_dla34, keyframe,
#       random_skip; random init: a forward's time does not depend on the weights; timed on the sample
#       MOT17-04 frames of MOT17-mini, 1920x1080 as MOT17);                                   <= 4.5 min
#   (c) one heavy row end to end on the sample data (FairMOT DLA-34, 576x320, dense) and the light PASS-F
#       row in fp16, on CUDA (accuracy runs: tracking, decoding and scoring on the device).    <= 1.5 min
# Needs the sample data (../shared/data, or PASSBENCH_DATA pointing at a copy of it).
# Records go to results/gpu_check/ (records/*.jsonl, tables/); the log to results/gpu_check/gpu_check.log.
#   usage: scripts/gpu_check.sh [results folder]      env: PY (default .venv/bin/python), DEVICE (cuda)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEVICE=${DEVICE:-cuda}
RES=${1:-results/gpu_check}
mkdir -p "$RES"
LOG=$RES/gpu_check.log
exec > >(tee -a "$LOG") 2>&1
echo "== gpu_check $(date -u +%FT%TZ) $(git rev-parse --short HEAD) on $DEVICE"
$PY -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, " + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA DEVICE"))'
$PY -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || { echo "no CUDA device: nothing to check"; exit 1; }
rc=0
t0=$SECONDS

echo "== (a) engine exactness and device tests on CUDA"
timeout 120 $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_sparse.py tests/test_skip_wrapper.py \
  tests/test_device.py tests/test_speed.py tests/test_speed_cli.py || rc=1
echo "   (a) took $((SECONDS - t0)) s"

echo "== (b) forward timing: every Table 3 row, fp32 / fp16, 576x320 / 1088x608"
t1=$SECONDS
timeout 270 $PY scripts/gpu_speed.py --device "$DEVICE" --folders table3 --sizes 576x320 1088x608 \
  --precisions fp32 fp16 --results-dir "$RES" speed.iters=15 speed.warmup=3 speed.threads=4 || rc=1
timeout $((275 - (SECONDS - t1) > 20 ? 275 - (SECONDS - t1) : 20)) $PY scripts/gpu_speed.py --device "$DEVICE" \
  --folders paper/table3 --sizes 576x320 1088x608 --precisions fp32 fp16 --results-dir "$RES" \
  model.weights=null dataset.name=MOT17-mini "dataset.sequences=[MOT17-04-FRCNN]" "dataset.halves={}" \
  speed.iters=15 speed.warmup=3 speed.threads=4 || rc=1
echo "   (b) took $((SECONDS - t1)) s"

echo "== (c) accuracy end to end on the sample data, on $DEVICE"
t2=$SECONDS
timeout 90 $PY -m passbench.cli --results-dir "$RES" run configs/table3/fairmot_dla34.yaml --device "$DEVICE" \
  speed.iters=15 speed.threads=4 || rc=1
timeout 60 $PY -m passbench.cli --results-dir "$RES" run configs/table3/pass_f.yaml --device "$DEVICE" \
  --precision fp16 speed.iters=15 speed.threads=4 || rc=1
echo "   (c) took $((SECONDS - t2)) s"

$PY -m passbench.cli --results-dir "$RES" table 3 > /dev/null || rc=1
echo "== gpu_check done in $((SECONDS - t0)) s, exit $rc; records in $RES/records, tables in $RES/tables"
exit $rc
