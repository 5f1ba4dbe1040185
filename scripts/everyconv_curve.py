"""One point of a task stage's accuracy curve: score its current checkpoint densely on the sample eval split.

    .venv/bin/python scripts/everyconv_curve.py runs/everyconv/timm-resnet18/task --model timm:resnet18

``scripts/train_everyconv.sh`` calls this after every chunk of the task stage (``--stop-at``). It reads
``RUN/last.pt`` (the resumable checkpoint), turns its model weights into a ``final.pt`` in a temporary file,
runs the dense row (``configs/everyconv/dense.yaml`` with ``model.name`` / ``model.weights`` set, 1 thread,
no timing) on the sample eval split without writing a record, and appends one line to ``RUN/curve.jsonl``:
``{step, train_minutes, mota, idf1, ids, frames, created_utc}``. ``train_minutes`` sums the stage's logged
``elapsed_s`` over its chunks (the log restarts the clock at each resume; the last step of a chunk is logged
when the chunk is a multiple of ``log_every``). A step already in the curve is not scored again. MOTA per
training minute is what chooses between the plain-conv models (docs/everyconv.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passbench.config import load_config  # noqa: E402
from passbench.runner import run  # noqa: E402
from passbench.train.build import build_net  # noqa: E402
from passbench.train.common import make_cfg, save_final  # noqa: E402


def train_minutes(log: Path) -> float:
    """Minutes of training in ``log.jsonl``: the last ``elapsed_s`` of each resumed segment, summed."""
    total, last = 0.0, 0.0
    for line in log.read_text().splitlines() if log.exists() else []:
        e = float(json.loads(line).get("elapsed_s", 0.0))
        if e < last:  # a resume restarted the clock
            total += last
        last = e
    return (total + last) / 60.0


def snapshot(last_pt: Path, dst: Path) -> int:
    """Write the model weights of a resumable checkpoint as a ``final.pt``; returns its step."""
    ck = torch.load(last_pt, map_location="cpu", weights_only=False)
    cfg = make_cfg(ck["stage"], {k: v for k, v in ck["config"].items() if k != "stage"})
    model = build_net(cfg.model, pretrained=False, **cfg.model_kwargs)
    state = {k[len("model."):]: v for k, v in ck["objective"].items() if k.startswith("model.")}
    model.load_state_dict(state, strict=True)
    save_final(dst, cfg=cfg, model=model, skip=None)
    return int(ck["step"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", help="the task stage's --out folder (holds last.pt and log.jsonl)")
    ap.add_argument("--model", required=True, help="the model name the stage trains")
    ap.add_argument("--config", default=str(ROOT / "configs/everyconv/dense.yaml"), help="the dense row to score")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)
    run_dir = Path(args.run_dir)
    curve = run_dir / "curve.jsonl"
    done = {json.loads(ln)["step"] for ln in curve.read_text().splitlines()} if curve.exists() else set()
    step = int(torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)["step"])
    if step in done:
        print(f"{curve}: step {step} already scored")
        return 0
    with tempfile.TemporaryDirectory(dir=run_dir) as tmp:
        snap = Path(tmp) / "final.pt"
        snapshot(run_dir / "last.pt", snap)
        cfg = load_config(args.config, [f"model.name={args.model}", f"model.weights={snap}",
                                        "speed.enabled=false", "speed.threads=1"])
        rec = run(cfg, data_root=args.data_root, write=False, progress=False)
    met = rec.get("metrics") or {}
    if rec.get("kind") != "run":
        raise SystemExit(f"{cfg.name}: not scored: {rec.get('reason', rec)}")
    point = {"step": step, "train_minutes": round(train_minutes(run_dir / "log.jsonl"), 2), "mota": met.get("mota"),
             "idf1": met.get("idf1"), "ids": met.get("ids"), "frames": (rec.get("dataset") or {}).get("frames"),
             "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    with open(curve, "a") as f:
        f.write(json.dumps(point) + "\n")
    print(json.dumps(point))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
