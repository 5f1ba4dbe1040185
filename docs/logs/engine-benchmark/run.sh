#!/usr/bin/env bash
# Before (git archive of the engine at 92e8a9a, same bench / profile scripts) and after (the checkout),
# each command run back to back, before first. Logs: <logs>/<tag>_<name>.txt
set -u
export PASSBENCH_DATA=../shared/data
PY=<checkout>/.venv/bin/python
run() {  # name, command...
  local name=$1; shift
  for tag in before after; do
    if [ $tag = before ]; then dir=<before: git archive of 92e8a9a>; else dir=<checkout>; fi
    ( cd $dir && echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) git $( [ $tag = before ] && cat SHA || git rev-parse --short HEAD ) dir $dir" && \
      echo "# command: $*" && PYTHONPATH=$dir timeout 1500 $PY "$@" ) > <logs>/${tag}_${name}.txt 2>&1
  done
}
after() {  # name, command... (the checkout only)
  local name=$1; shift
  ( cd <checkout> && echo "# $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) git $(git rev-parse --short HEAD)" && \
    echo "# command: $*" && timeout 1500 $PY "$@" ) > <logs>/after_${name}.txt 2>&1
}
run light_pass_t1   scripts/profile_gates.py --light pass_p --threads 1 --frames 16 --per-layer
run light_norm_t1   scripts/profile_gates.py --light skipconv_norm --quantile 0.5 --threads 1 --frames 16
run light_fixed_t1  scripts/profile_gates.py --light fixed --keep 0.5 --threads 1 --frames 16
run light_fixedall_t1 scripts/profile_gates.py --light fixed --keep 0.5 --layers all --threads 1 --frames 16
run light_passall_t1 scripts/profile_gates.py --light pass_p --layers all --threads 1 --frames 16
after light_engines_t1 scripts/profile_gates.py --light pass_p --engines eager fast --threads 1 --frames 16
run e2e_nets_t1     -m passbench.skip.bench --no-layers --e2e --frames 10 --fold-bn --threads 1 --size 384 224 --nets resnet18 timm:resnet18 fairmot_dla34_conv --keeps 0.5 0.25 0.1 --no-norm
run e2e_tv_t2       -m passbench.skip.bench --no-layers --e2e --frames 8 --fold-bn --threads 2
run quick_t1        -m passbench.skip.bench --quick --threads 1 --reps 11
run quick_t2        -m passbench.skip.bench --quick
run light_pass_t2   scripts/profile_gates.py --light pass_p --threads 2 --frames 16 --per-layer
run light_norm_t2   scripts/profile_gates.py --light skipconv_norm --quantile 0.5 --threads 2 --frames 16
after speed_rows_t2 -m passbench.cli --results-dir <logs>/res speed configs/table3/skipconv.yaml --threads 2
echo done > <logs>/DONE
