"""``passbench speed CONFIG``: time a MOT row's model forward alone, on a chosen device and precision.

For a user on a GPU or a Jetson who wants that device's FPS beside the CPU records: the row's model
is built exactly as ``run`` builds it (weights, gates, operating point, BatchNorm folding, memory
format), its dense twin and the skipping model are timed on the first frames of the row's first
sequence (``core._measure_speed``: same process, alternating rounds, CUDA events after a
synchronisation, optional ``torch.autocast``), and a speed record (``kind: "speed"``,
``passbench.records.speed_record``) is appended; no tracking, no scores. Tables show it as an extra
FPS column for that device (``passbench.report.tables.device_label``). The CPU budget
(``max_cpu_gmacs``) applies only when timing on the CPU.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from passbench.config import ConfigError, ExperimentCfg, to_dict
from passbench.records import append_record, speed_record
from passbench.runner.core import SkipRow, _data_root, _measure_speed, _need, _sha256, _weights_path, records_file


def run_speed(cfg: ExperimentCfg, *, device: str | None = None, precision: str = "fp32", threads: int | None = None,
              data_root: str | os.PathLike[str] | None = None, results: str | os.PathLike[str] | None = None,
              write: bool = True) -> dict[str, Any]:
    """Time ``cfg``'s forward (dense twin and method) and return (and append) its speed record.

    Args:
        cfg: a MOT row's resolved config.
        device: "cpu", "cuda", "cuda:1", ... (default ``cfg.speed.device``).
        precision: "fp32", "fp16" or "bf16" (autocast).
        threads: torch intra-op threads (default ``cfg.speed.threads``; matters on the CPU).
        data_root, results, write: as ``passbench.runner.run``.

    Raises:
        NotImplementedError: a pose row (its streams are timed by ``run`` only, for now).
        SkipRow: the row is over the CPU budget and ``device`` is the CPU.
        ConfigError: ``device`` is CUDA and no CUDA device is available (exit 2 from the CLI).
    """
    if cfg.task != "mot":
        raise NotImplementedError(f"{cfg.name}: passbench speed times MOT rows only (task {cfg.task!r})")
    import torch  # noqa: PLC0415

    dev = str(device or cfg.speed.device)
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{cfg.name}: --device {dev}: no CUDA device is available here")
    cfg = dataclasses.replace(cfg, speed=dataclasses.replace(cfg.speed, device=dev, enabled=True,
                                                             threads=threads or cfg.speed.threads))
    from passbench.runner.mot import _mot_sequences, _prepare_model, _timing_inputs  # noqa: PLC0415

    root = _data_root(cfg, data_root)
    seq_dirs = _mot_sequences(cfg, root)
    weights = _weights_path(cfg)
    model, skippable, knob, _ = _prepare_model(cfg, root, weights)  # the CPU budget: a skip marker on the CPU only
    seq = _need("passbench.datasets.mot", "load_sequence")(str(seq_dirs[0]))
    frames = _timing_inputs(cfg, seq)  # as run times them
    speed = _measure_speed(cfg, model, skippable, frames, device=dev, precision=precision)
    rec = speed_record(
        experiment=cfg.name, task=cfg.task,
        model={"name": cfg.model.name, "tag": "trained" if weights else "init",
               "weights_sha256": _sha256(weights) if weights else None},
        method={"name": cfg.method.name, "params": dict(cfg.method.params), "knob": knob},
        speed=speed, config=to_dict(cfg))
    if write:
        append_record(records_file(cfg, results), rec)
    return rec


__all__ = ["SkipRow", "run_speed"]
