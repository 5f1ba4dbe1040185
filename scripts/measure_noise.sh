#!/usr/bin/env bash
# Noise, measured: how far a verdict can move when nothing but the seed or the timing round changes.
#
#   scripts/measure_noise.sh seeds [SEED ...]        (default: 1 2; seed 0 is the committed chain)
#     Trains PASS-P, PASS-F (on that PASS-P) and Skip-Conv's Gumbel gates again with each SEED, with exactly
#     the recipe of scripts/train_sample.sh (that script runs unchanged, in runs/seeds/s<SEED>/, a folder
#     that links scripts/ and the committed task model; the seed is appended to every training stage), then
#     evaluates each at Table 3's operating point into results/records/seeds.jsonl
#     (configs/seeds/table3/<row>_s<SEED>.yaml: experiments seeds/table3/<row>_s<SEED>). The claims ledger
#     reads them as the seed spread (passbench/report/query.py).
#     Cost: about what scripts/train_sample.sh pass_p pass_f skipconv_gumbel costs, per seed (hours on 2
#     CPU cores), plus three Table 3 rows per seed.
#
#   scripts/measure_noise.sh timing [ROUNDS [CONFIG ...]]   (default: 6 rounds, every Table 3 light row)
#     passbench speed --threads 1 with ROUNDS alternating dense / skipping rounds (10 timed forwards of each
#     per round): the speed record keeps every round's ratio (speed.speedup_rounds) and the machine load
#     around the timing. Run it on a quiet machine: a timing under load is flagged, and the ledger calls it
#     inconclusive.
#
# Environment: PY (python; default .venv/bin/python), NOISE_RUNS (default runs/seeds), NOISE_TRAIN_EXTRA
# (key=value appended to every training stage, after the seed), NOISE_EVAL_EXTRA (overrides for every
# passbench run / speed), PASSBENCH_RESULTS (where records go). The tests run both jobs on a tiny slice
# with these (tests/test_noise_script.py).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PY:-$REPO/.venv/bin/python}
case $PY in /*) ;; *) PY=$REPO/$PY ;; esac
RUNS=${NOISE_RUNS:-runs/seeds}
EVAL_EXTRA=${NOISE_EVAL_EXTRA:-}
ROWS=(pass_p pass_f skipconv_gumbel)

seeds() {
  local seeds=("$@"); [ ${#seeds[@]} -eq 0 ] && seeds=(1 2)
  for k in "${seeds[@]}"; do
    [[ $k =~ ^[1-9][0-9]*$ ]] || { echo "seed must be a positive integer (0 is the committed chain): $k" >&2; exit 2; }
    local dir=$RUNS/s$k
    case $dir in /*) ;; *) dir=$REPO/$dir ;; esac
    for row in "${ROWS[@]}"; do
      [ -f "configs/seeds/table3/${row}_s$k.yaml" ] || { echo "no configs/seeds/table3/${row}_s$k.yaml: write it first" >&2; exit 2; }
    done
    mkdir -p "$dir/weights/sample"
    ln -sfn "$REPO/scripts" "$dir/scripts"                     # train_sample.sh runs as is, from $dir
    ln -sf "$REPO/weights/sample/task.pt" "$dir/weights/sample/task.pt"   # the committed task model
    # the python train_sample.sh calls: the seed (and NOISE_TRAIN_EXTRA) appended to every training stage
    cat > "$dir/py" <<EOF
#!/usr/bin/env bash
export PYTHONPATH="$REPO\${PYTHONPATH:+:\$PYTHONPATH}"
if [ "\${1:-}" = "-m" ] && [ "\${2:-}" = "passbench.train" ]; then
  exec "$PY" "\$@" seed=$k ${NOISE_TRAIN_EXTRA:-}
fi
exec "$PY" "\$@"
EOF
    chmod +x "$dir/py"
    echo "== seed $k: training ${ROWS[*]} in $dir"
    PY="$dir/py" "$dir/scripts/train_sample.sh" pass_p pass_f skipconv_gumbel
    for row in "${ROWS[@]}"; do
      # the weights as published above (the config names the same file under the default NOISE_RUNS)
      # shellcheck disable=SC2086  # NOISE_EVAL_EXTRA is a list of key=value words
      "$PY" -m passbench.cli run "configs/seeds/table3/${row}_s$k.yaml" "model.weights=$RUNS/s$k/weights/sample/$row.pt" \
        $EVAL_EXTRA
    done
  done
}

timing() {
  local rounds=${1:-6}; shift || true
  local cfgs=("$@")
  [ ${#cfgs[@]} -eq 0 ] && cfgs=(configs/table3/{dense_light,pass_p,pass_f,skipconv,skipconv_gumbel,keyframe,random_skip}.yaml)
  [[ $rounds =~ ^[0-9]+$ ]] && [ "$rounds" -ge 2 ] || { echo "rounds must be an integer >= 2: $rounds" >&2; exit 2; }
  for cfg in "${cfgs[@]}"; do
    # shellcheck disable=SC2086
    "$PY" -m passbench.cli speed "$cfg" --threads 1 "speed.rounds=$rounds" "speed.iters=$((10 * rounds))" $EVAL_EXTRA
  done
}

job=${1:-}; shift || true
case $job in
  seeds) seeds "$@" ;;
  timing) timing "$@" ;;
  *) echo "usage: scripts/measure_noise.sh seeds [SEED ...] | timing [ROUNDS [CONFIG ...]]" >&2; exit 2 ;;
esac
