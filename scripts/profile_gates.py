"""Where the time of a skipping model goes: gates vs wrapped layers vs the rest, against its dense twin.

    .venv/bin/python scripts/profile_gates.py [CONFIG]      (default configs/table3/pass_f.yaml)

Builds the model exactly as the runner does (weights, BN folded, channels-last), streams 12
consecutive PETS09-S2L1 frames, prints the torch profiler's top ops over 4 gated frames, then the
per-frame wall time of the skipping model, its dense twin, the gates alone and the wrapped layers
(gates included), measured with forward hooks. 2 threads, as the Table 3 rows.
"""

from __future__ import annotations

import collections
import sys
import time

import torch

from passbench import runner
from passbench.config import load_config
from passbench.datasets.mot import load_sequence
from passbench.models import build_model
from passbench.paths import resolve_data_root
from passbench.skip import fold_batchnorm, reset
from passbench.skip.wrapper import skippable_layers


def main(config: str = "configs/table3/pass_f.yaml") -> None:
    torch.set_num_threads(2)
    cfg = load_config(config)
    model = build_model(cfg.model.name, pretrained=False).eval()
    model, skippable = runner._load_weights(model, runner._weights_path(cfg), cfg)
    if not skippable:
        raise SystemExit(f"{config}: not a skipping row")
    model.eval()
    fold_batchnorm(model)
    model = model.to(memory_format=torch.channels_last)
    seq = load_sequence(str(resolve_data_root(None) / "MOT15/train/PETS09-S2L1"))
    frames = runner._timing_inputs(cfg, seq)[:12]
    twin = runner._dense_twin(model)
    with torch.inference_mode():
        reset(model)
        for f in frames[:4]:
            model(f)
        with torch.profiler.profile() as prof:
            for f in frames[4:8]:
                model(f)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))

    acc: dict[str, float] = collections.defaultdict(float)

    def timed(mod: torch.nn.Module, key: str) -> None:
        mod.register_forward_pre_hook(lambda m, i: setattr(m, "_t0", time.perf_counter()))
        mod.register_forward_hook(lambda m, i, o: acc.__setitem__(key, acc[key] + time.perf_counter() - m._t0))

    for _, layer in skippable_layers(model):
        timed(layer.gate, "gates")
        timed(layer, "wrapped layers (incl. gates)")
    n = 7
    with torch.inference_mode():
        reset(model)
        model(frames[0])
        t0 = time.perf_counter()
        for f in frames[1:1 + n]:
            model(f)
        skip_ms = (time.perf_counter() - t0) / n * 1e3
        t0 = time.perf_counter()
        for f in frames[1:1 + n]:
            twin(f)
        dense_ms = (time.perf_counter() - t0) / n * 1e3
    print(f"{config}: per frame (mean of {n}, refresh frames included): skipping model {skip_ms:.1f} ms, "
          f"dense twin {dense_ms:.1f} ms, " + ", ".join(f"{k} {v / n * 1e3:.1f} ms" for k, v in acc.items()))
    print("last path per layer:", {name: layer.last_path for name, layer in skippable_layers(model)})


if __name__ == "__main__":
    main(*sys.argv[1:])
