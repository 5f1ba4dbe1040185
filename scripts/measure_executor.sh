#!/usr/bin/env bash
# Wall time of a sweep with --executor local (serial) and --executor ray, on this machine, with the load.
#
#   scripts/measure_executor.sh [--what tradeoff|table3|both] [--frames FIRST,LAST] [--set KEY=VALUE ...] [--out DIR] [--compare]
#
# tradeoff: `passbench figure tradeoff --run speed.enabled=false speed.threads=1` (the trade-off's and the
#           refresh table's accuracy rows, as `invoke figure -n tradeoff` measured them; 2 workers of 1
#           thread each on a 2-core machine);
# table3:   `passbench reproduce 3` (its configs as they are: timed rows, 2 threads; with ray each timed
#           row's accuracy runs in parallel with timing off and its timing alone at the end).
# Each command runs into a fresh results folder (DIR/<what>-<executor>, default under a temp dir), so every
# row runs; then the records of the two runs are compared (equal apart from run ids and times, and the
# timed numbers where a row was timed) and the wall times, their ratio and /proc/loadavg before and after
# each run are printed. --frames runs a slice (TUD-Campus frames FIRST..LAST only) and --set adds config
# overrides to every row (e.g. --set speed.iters=2 --set speed.warmup=1): checks that the script works,
# not a measurement. Run it on a quiet machine: the load average is printed so that a reader can tell.
# --compare runs nothing: it compares the two runs already in DIR (and prints their ratio from DIR/times.txt).
# The comparison names every field that differs; the auto dispatcher's executed MACs (cost.gmacs_executed,
# cost.mac_reduction) come from a per-process timing calibration and differ between two serial runs too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
what=both frames="" out="" sets=() only_compare=""
while [ $# -gt 0 ]; do
  case "$1" in
    --what) what=$2; shift 2 ;;
    --frames) frames=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --set) sets+=("$2"); shift 2 ;;
    --compare) only_compare=1; shift ;;
    *) echo "usage: $0 [--what tradeoff|table3|both] [--frames FIRST,LAST] [--set KEY=VALUE ...] [--out DIR] [--compare]" >&2
       exit 2 ;;
  esac
done
out=${out:-$(mktemp -d /tmp/passbench-executor.XXXXXX)}
mkdir -p "$out"
slice=("${sets[@]}")
if [ -n "$frames" ]; then
  slice+=("dataset.sequences=[TUD-Campus]" "dataset.frames=[$frames]")
fi

run() {  # run NAME EXECUTOR ARGS...: prints "NAME EXECUTOR seconds load-before load-after"
  local name=$1 ex=$2; shift 2
  local res="$out/$name-$ex" log="$out/$name-$ex.log"
  rm -rf "$res"
  local l0 t0 t1 rc=0
  l0=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(date +%s.%N)
  "$PY" -m passbench.cli --results-dir "$res" "$@" --executor "$ex" >"$log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  printf '%-9s %-6s %8.1f s  exit %d  load before %s  after %s  (log %s)\n' "$name" "$ex" \
    "$(echo "$t1 - $t0" | bc)" "$rc" "$l0" "$(cut -d' ' -f1-3 /proc/loadavg)" "$log"
}

compare() {  # compare NAME: the two runs' records, equal apart from ids / times / timed numbers
  "$PY" - "$out/$1-local" "$out/$1-ray" <<'EOF'
import json, sys
from pathlib import Path

def load(d):
    return {f.name: [json.loads(l) for l in f.read_text().splitlines()] for f in sorted(Path(d, "records").glob("*.jsonl"))}

def strip(r):
    timed = (r.get("config") or {}).get("speed", {}).get("enabled")
    return {k: v for k, v in r.items() if k not in ("run_id", "created_utc") and not (timed and k == "speed")}

a, b = load(sys.argv[1]), load(sys.argv[2])
if not a or not b:
    sys.exit(f"  records: none from the {'serial' if not a else 'ray'} run (see its log): nothing to compare")

def flat(d, p=""):
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{p}{k}.") if isinstance(v, dict) else {p + k: v})
    return out

# Fields the auto dispatcher (passbench.skip.dispatch: a per-process timing calibration) decides: which layers
# ran their sparse kernel, hence the executed MACs; they vary between two serial runs as a timing does.
DISPATCH = {"cost.gmacs_executed", "cost.mac_reduction"}
n = sum(len(v) for v in a.values())
print(f"  records: {n} serial, {sum(len(v) for v in b.values())} ray")
if list(a) != list(b) or any([r["experiment"] for r in a[f]] != [r["experiment"] for r in b[f]] for f in a):
    print("  DIFFERENT: not the same rows in the same order")
    sys.exit(0)
diff = {}
for f in a:
    for ra, rb in zip(a[f], b[f]):
        fa, fb = flat(strip(ra)), flat(strip(rb))
        for k in sorted(set(fa) | set(fb)):
            if fa.get(k) != fb.get(k):
                diff.setdefault(k, []).append(ra["experiment"])
if not diff:
    print("  identical apart from run ids / times (and timed numbers)")
for k, rows in diff.items():
    tag = "(dispatcher-decided)" if k in DISPATCH else "(code or environment)" if k.startswith("env.") else "DIFFERENT"
    print(f"  {k}: differs on {len(rows)} rows {tag}, e.g. {', '.join(rows[:3])}")
other = [k for k in diff if k not in DISPATCH and not k.startswith("env.")]
print("  every other field identical, bit for bit" if not other else f"  {len(other)} other fields differ")
EOF
}

ratio() {  # ratio NAME (only when neither run stopped on a usage error, exit 2)
  local s r
  if grep -E "^$1 +(local|ray) .* exit 2 " "$out/times.txt" >/dev/null; then
    echo "  ray / serial wall time: not comparable (a run exited 2)"
    return
  fi
  s=$(grep -E "^$1 +local " "$out/times.txt" | awk '{print $3}')
  r=$(grep -E "^$1 +ray " "$out/times.txt" | awk '{print $3}')
  echo "  ray / serial wall time: $(echo "scale=2; $r / $s" | bc)"
}

if [ -n "$only_compare" ]; then
  for name in tradeoff table3; do
    { [ "$what" = both ] || [ "$what" = "$name" ]; } && [ -d "$out/$name-local" ] || continue
    echo "$name:"; compare "$name" || true; ratio "$name"
  done
  exit 0
fi
echo "passbench executor measurement: $(nproc) CPUs, $(git rev-parse --short HEAD), results in $out" | tee "$out/times.txt"
for name in tradeoff table3; do
  [ "$what" = both ] || [ "$what" = "$name" ] || continue
  for ex in local ray; do
    if [ "$name" = tradeoff ]; then
      run tradeoff "$ex" figure tradeoff --run speed.enabled=false speed.threads=1 "${slice[@]}" | tee -a "$out/times.txt"
    else
      run table3 "$ex" reproduce 3 "${slice[@]}" | tee -a "$out/times.txt"
    fi
  done
  compare "$name" 2>&1 | tee -a "$out/times.txt" || true
  ratio "$name" | tee -a "$out/times.txt"
done
