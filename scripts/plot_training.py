"""Loss curves of the committed sample weights, from their training logs (docs/training.md).

    .venv/bin/python scripts/plot_training.py [--logs weights/sample/logs] [--out docs/figures/training_curves.png]

Reads ``<stage>.log.jsonl`` (the ``log.jsonl`` each ``python -m passbench.train`` run writes, copied next to
the weights) and draws one panel per stage: PASS-P's triplet distances L_p / L_n (relative MSE of the
positive / negative heads to the anchor's) and its skip rate; faint: the logged steps, solid: a
trailing mean over 5 of them; PASS-F's and Skip-Conv Gumbel's task loss
(and skip rate); the rate-term ablation (``pass_p_rate_weight_0``) when present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rolling(v: list[float], k: int = 5) -> list[float]:
    """Trailing mean over ``k`` logged points (each log line is one step's value, not an average)."""
    return [sum(v[max(0, i - k + 1): i + 1]) / len(v[max(0, i - k + 1): i + 1]) for i in range(len(v))]


def read_log(path: Path) -> list[dict]:
    """Log lines in step order; a step logged twice (a run resumed from an earlier checkpoint replays
    the same steps exactly) is kept once, its last line."""
    by_step = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            by_step[r["step"]] = r
    return [by_step[k] for k in sorted(by_step)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--logs", default="weights/sample/logs", type=Path)
    ap.add_argument("--out", default="docs/figures/training_curves.png", type=Path)
    args = ap.parse_args(argv)
    stems = ("pass_p", "pass_p_rate0", "pass_p_paper", "pass_f", "pass_f_lr1e-4", "pass_f_dense", "skipconv_gumbel")
    panels = [(stem, read_log(p)) for stem in stems if (p := args.logs / f"{stem}.log.jsonl").is_file()]
    if not panels:
        raise SystemExit(f"no <stage>.log.jsonl under {args.logs}")
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (stem, log) in zip(axes.flat, panels):
        step = [r["step"] + 1 for r in log]
        if "L_p" in log[0]:
            lp, ln = [r["L_p"] for r in log], [r["L_n"] for r in log]
            ax.plot(step, lp, color="C0", alpha=0.35)
            ax.plot(step, ln, color="C1", alpha=0.35)
            ax.plot(step, rolling(lp), color="C0", label="L_p (anchor-positive)")
            ax.plot(step, rolling(ln), color="C1", label="L_n (anchor-negative)")
            ax.set_ylabel("head distance (balanced: over the untrained-gate distance; mse: over the anchor)")
        else:
            loss = [r["loss"] for r in log]
            ax.plot(step, loss, color="C0", alpha=0.35)
            ax.plot(step, rolling(loss), color="C0", label="task loss")
            ax.set_ylabel("loss")
        if "skip_rate" in log[0]:
            tw = ax.twinx()
            tw.plot(step, [r["skip_rate"] for r in log], color="0.5", linestyle=":", label="skip rate (train)")
            tw.set_ylim(0, 1)
            tw.set_ylabel("skip rate", color="0.4")
        ax.set_title(stem, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
