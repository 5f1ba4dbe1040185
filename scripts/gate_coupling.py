"""Does a group of layers' skipping matter to the gates after it? One row, three ways, one process each.

    .venv/bin/python scripts/gate_coupling.py configs/everyconv/pass_p_r40.yaml "neck.*"

Runs the row (``passbench.runner.run``, nothing written) as configured, with the layers matching GLOB gated at
rate 0 (their gates run and skip nothing: the layers compute every patch), and with those layers ungated
(``method.params.ungated``: no gate, dense). The last two compute the same thing in those layers; if both lose
accuracy against the first, the loss comes from the layers computing fully (what the later gates see), not
from how they were made dense. Prints MOTA, false positives and misses per variant (all sequences and per
sequence), the measured skip and the executed GMACs. The every-conv result: ``docs/everyconv.md``.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import passbench.runner.mot as mot  # noqa: E402
from passbench import skip  # noqa: E402
from passbench.config import load_config  # noqa: E402
from passbench.runner import run  # noqa: E402


def _line(tag: str, rec: dict) -> str:
    m, c = rec["metrics"], rec["cost"]
    per = ", ".join(f"{s} {v['mota']:.3f} (FP {v['fp']}, FN {v['fn']})" for s, v in m["per_sequence"].items())
    return (f"{tag:34s} MOTA {100 * m['mota']:5.1f}  FP {m['fp']:4d}  FN {m['fn']:4d}  skip {100 * c['patch_skip_rate']:4.1f} %"
            f"  GMACs {c['gmacs_executed'] + c['gate_gmacs']:.3f}  | {per}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("glob", help="the layers whose skipping is in question, e.g. 'neck.*'")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)
    print(f"# {args.config}, layers {args.glob!r}: as configured / computing fully with their gates at rate 0 / ungated")
    print(_line("as configured", run(load_config(args.config), args.data_root, write=False)))
    orig = mot.operating_point

    def rate0(cfg, model, pairs):  # the row's operating point, then the layers' gates at rate 0
        knob = orig(cfg, model, pairs)
        hit = [m for n, m in skip.skippable_layers(model) if m.gate is not None and fnmatch.fnmatch(n, args.glob)]
        if not hit:
            raise SystemExit(f"gate_coupling: {args.glob!r} matches no gated layer")
        for m in hit:
            m.gate.set_rate(0.0)
        return knob

    mot.operating_point = rate0
    try:
        print(_line("gated at rate 0", run(load_config(args.config), args.data_root, write=False)))
    finally:
        mot.operating_point = orig
    cfg = load_config(args.config, [f'method.params.ungated=["{args.glob}"]'])
    print(_line("ungated", run(cfg, args.data_root, write=False)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
