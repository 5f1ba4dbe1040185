"""Time every row of a config folder with ``passbench speed`` in one process (no per-run import cost):
for each config x input size x precision, the dense twin and the method, on one device.

    python scripts/gpu_speed.py --device cuda --folders table3 paper/table3 --sizes 576x320 1088x608 \\
        --precisions fp32 fp16 --results-dir results/gpu_check [key=value ...]

One line per timed row (FPS skipped / dense, ratio, p50 latency); rows that cannot be timed (no trained gates,
a missing weights file or data) are listed with the reason and skipped; speed records go to
``<results-dir>/records/<table>.jsonl`` (``passbench.runner.speed``). Used by ``scripts/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from passbench.config import ConfigError, find_configs, load_config
    from passbench.runner import WeightsNotFoundError
    from passbench.runner.speed import SkipRow, run_speed

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--folders", nargs="+", default=["table3"])
    ap.add_argument("--sizes", nargs="+", default=["576x320", "1088x608"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "fp16"])
    ap.add_argument("--results-dir", default=None)
    ap.add_argument("overrides", nargs="*", help="config overrides for every row, e.g. speed.iters=15")
    args = ap.parse_args(argv)
    t0, done, skipped = time.perf_counter(), 0, 0
    for folder in args.folders:
        for path in find_configs(folder):
            for size in args.sizes:
                w, h = (int(v) for v in size.split("x"))
                for prec in args.precisions:
                    try:
                        cfg = load_config(path, [*args.overrides, f"model.input_wh=[{w},{h}]"])
                        if cfg.task != "mot":
                            continue
                        rec = run_speed(cfg, device=args.device, precision=prec, results=args.results_dir)
                    except (SkipRow, WeightsNotFoundError, ConfigError, FileNotFoundError, ValueError) as e:
                        print(f"{path.parent.name}/{path.stem} {size} {prec}: not timed: {type(e).__name__}: {e}",
                              flush=True)
                        skipped += 1
                        continue
                    sp = rec["speed"]
                    print(f"{cfg.name} {size} {prec}: {sp['fps']:.1f} FPS, dense {sp['fps_dense']:.1f} "
                          f"({sp['speedup']:.2f}x), p50 {sp['latency_ms_p50']:.2f} ms [{sp['device']}] "
                          f"{time.perf_counter() - t0:.0f} s", flush=True)
                    done += 1
    print(f"gpu_speed: {done} rows timed, {skipped} not timed, {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
