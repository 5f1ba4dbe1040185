"""Start a training chain from an official checkpoint: ``python -m passbench.train.official SRC --model NAME --out DIR``.

The PASS-P / PASS-F / Skip-Conv stages start from a ``passbench.train`` ``final.pt`` (``init=``) and store
only what differs from it (``save_final(delta_from=...)``). This turns a released checkpoint into that
first ``final.pt`` without training (stage ``task``, ``steps=0``):

* FairMOT's ``fairmot_dla34.pth`` / ``all_dla34.pth`` (``{'epoch', 'state_dict'}``, upstream
  ``save_model``) into ``fairmot_dla34`` (DCN) or ``fairmot_dla34_conv``;
* an upstream 3DMPPE PoseNet / MobileHumanPose snapshot (``{'epoch', 'network', 'optimizer'}``, keys with
  DataParallel's ``module.``) into ``posenet_r50`` / ``mhp_lpski``; its ``model_kwargs`` get
  ``input_range: 255`` (upstream's input arithmetic, ``passbench.models.pose.common``), so every stage
  trained on it and every row evaluating it feed what the snapshot was trained on;
* any plain state dict that fits the model.

Keys are matched by ``passbench.models.checkpoint.load_checkpoint`` (the documented unused keys of
the official DLA-34 are dropped; anything else that does not fit is an error naming the keys). The
source file's sha256 and name are kept in ``extra`` (``source``); the weights are stored as they are
(float32). FairMOT's released checkpoints hold the model only, not the re-ID classifier of its loss:
a later stage that fine-tunes with the task loss (PASS-F, Skip-Conv) starts that classifier afresh.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import torch

from passbench.train.common import make_cfg, save_final

UPSTREAM_INPUT_RANGE = 255  # 3DMPPE / MobileHumanPose: (pixel - mean) / std on the 0-255 crop


def source_kind(src: str | Path) -> str:
    """``"fairmot"`` (``state_dict``), ``"upstream_pose"`` (``network``) or ``"state_dict"``."""
    ck = torch.load(src, map_location="cpu", weights_only=False)
    if isinstance(ck, dict) and isinstance(ck.get("network"), dict):
        return "upstream_pose"
    if isinstance(ck, dict) and isinstance(ck.get("state_dict"), dict):
        return "fairmot"
    return "state_dict"


def import_checkpoint(src: str | Path, model: str, out: str | Path, *, task: str | None = None,
                      input_wh: tuple[int, int] | None = None, model_kwargs: dict[str, Any] | None = None) -> Path:
    """Write ``out/final.pt``: ``model`` with the weights of ``src`` (module docstring). Returns its path.

    Args:
        src: the official checkpoint.  model: a ``passbench.models`` name.
        task: ``mot`` / ``pose`` (default: ``pose`` for pose models, else ``mot``).
        input_wh: the network input the chain trains at (default: the model's benchmark input).
        model_kwargs: builder arguments (an upstream pose snapshot adds ``input_range: 255``).

    Raises:
        FileNotFoundError: ``src`` does not exist.  CheckpointMismatchError: its tensors do not fit.
    """
    from passbench.models import build_model, model_spec  # noqa: PLC0415
    from passbench.models.checkpoint import load_checkpoint  # noqa: PLC0415
    from passbench.models.pose import POSE_MODELS  # noqa: PLC0415

    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"official checkpoint {src} does not exist")
    kwargs = dict(model_kwargs or {})
    kind = source_kind(src)
    if kind == "upstream_pose":
        kwargs.setdefault("input_range", UPSTREAM_INPUT_RANGE)
    net = build_model(model, pretrained=False, **kwargs)
    report = load_checkpoint(net, src)
    task = task or ("pose" if model in POSE_MODELS else "mot")
    wh = list(input_wh or model_spec(model).input_wh)
    cfg = make_cfg("task", {"task": task, "model": model, "model_kwargs": kwargs, "input_wh": wh, "pretrained": None,
                            "steps": 0})
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / "final.pt"
    save_final(final, cfg=cfg, model=net, skip=None,
               extra={"source": {"file": src.name, "sha256": sha, "kind": kind, "loaded": report.loaded,
                                 "dropped_unused": list(report.unused)}})
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m passbench.train.official", description=__doc__.split("\n")[0])
    ap.add_argument("src", help="the official checkpoint (fairmot_dla34.pth, a 3DMPPE / MHP snapshot, a state dict)")
    ap.add_argument("--model", required=True, help="passbench model name, e.g. fairmot_dla34, posenet_r50, mhp_lpski")
    ap.add_argument("--out", required=True, help="folder for final.pt (the init= of the next stages)")
    ap.add_argument("--input-wh", type=int, nargs=2, default=None, metavar=("W", "H"),
                    help="network input the chain trains at (default: the model's benchmark input)")
    args = ap.parse_args(argv)
    from passbench.models.checkpoint import CheckpointMismatchError  # noqa: PLC0415

    try:
        final = import_checkpoint(args.src, args.model, args.out, input_wh=tuple(args.input_wh) if args.input_wh else None)
    except (FileNotFoundError, CheckpointMismatchError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{final}: {args.model} with the weights of {args.src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
