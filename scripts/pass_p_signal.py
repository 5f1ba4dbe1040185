"""What each PASS gate learns from: per-head triplet distances and, per deciding gate, the size of the
triplet loss's gradient against the target-rate term's (``passbench.train.pass_p.gate_signal``).

    .venv/bin/python scripts/pass_p_signal.py weights/sample/pass_p.pt [--batches 8] [key=value ...]

The key=value overrides are ``StageCfg`` fields of the PASS-P stage (``distance=``, ``margin=``, ...); the
checkpoint's own training config is the default, so the committed gates are read with the objective they
were trained with unless told otherwise. Prints one line per head and one per deciding gate.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from passbench.train.common import make_cfg, read_final
from passbench.train.pass_p import gate_signal


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", help="a PASS-P final.pt (gates on a task model)")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_intermixed_args(argv)
    torch.set_num_threads(1)
    fin = read_final(args.weights)
    base = {k: v for k, v in (fin.get("config") or {}).items() if k not in ("stage", "init")}
    over = dict(base)
    for kv in args.overrides:
        k, v = kv.split("=", 1)
        over[k] = v
    cfg = make_cfg("pass_p", {**over, "init": args.weights})
    res = gate_signal(cfg, batches=args.batches)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"objective: distance={cfg.distance} margin={cfg.margin} rate_weight={cfg.rate_weight} "
          f"target_rate={cfg.target_rate}; {res['pairs']} pairs; hinge active on {res['active_fraction']:.2f}")
    for h, d in res["heads"].items():
        print(f"head {h:9s} raw MSE pos {d['mse_p']:.3e} neg {d['mse_n']:.3e}  "
              f"term pos {d['d_p']:.4f} neg {d['d_n']:.4f} gap {d['d_n'] - d['d_p']:.4f}")
    for name, g in res["gates"].items():
        print(f"gate {name:14s} |grad triplet| {g['triplet']:.3e}  |grad rate| {g['rate']:.3e}  "
              f"ratio {g['ratio']:.3g}  skip prob {g['skip_prob']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
