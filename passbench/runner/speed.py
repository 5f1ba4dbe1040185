"""``passbench speed CONFIG``: time a MOT row's model forward alone, on a chosen device and precision.

For a user on a GPU or a Jetson who wants that device's FPS beside the CPU records: the row's model
is built exactly as ``run`` builds it (weights, gates, operating point, BatchNorm folding, memory
format), its dense twin and the skipping model are timed on the first frames of the row's first
sequence (``core.measure_speed``: same process, alternating rounds, CUDA events after a
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
from passbench.records import append_record, file_sha256, speed_record
from passbench.runner.core import SkipRow, measure_speed, need, records_file, row_data_root, weights_path


def run_speed(cfg: ExperimentCfg, *, device: str | None = None, precision: str | None = None, threads: int | None = None,
              data_root: str | os.PathLike[str] | None = None, results: str | os.PathLike[str] | None = None,
              write: bool = True) -> dict[str, Any]:
    """Time ``cfg``'s forward (dense twin and method) and return (and append) its speed record.

    Args:
        cfg: a MOT row's resolved config.
        device: "cpu", "cuda", "cuda:1", ... (default ``cfg.speed.device``).
        precision: "fp32", "fp16" or "bf16" (autocast; default ``cfg.speed.precision``).
        threads: torch intra-op threads (default ``cfg.speed.threads``; matters on the CPU).
        data_root, results, write: as ``passbench.runner.run``.

    Raises:
        NotImplementedError: a pose row (its streams are timed by ``run`` only, for now).
        SkipRow: the row is over the CPU budget and ``device`` is the CPU.
        ConfigError: ``device`` is CUDA and no CUDA device is available (exit 2 from the CLI).
    """
    if cfg.task != "mot":
        raise NotImplementedError(f"{cfg.name}: passbench speed times MOT rows only (task {cfg.task!r})")

    from passbench.device import DeviceError, check, run_env  # noqa: PLC0415

    dev = str(device or cfg.speed.device)
    cfg = dataclasses.replace(cfg, speed=dataclasses.replace(cfg.speed, device=dev, enabled=True,
                                                             precision=precision or cfg.speed.precision,
                                                             threads=threads or cfg.speed.threads))
    try:
        check(cfg)
    except DeviceError as e:
        raise ConfigError(str(e)) from None
    from passbench.runner.mot import mot_sequences, prepare_model, timing_inputs  # noqa: PLC0415

    root = row_data_root(cfg, data_root)
    seq_dirs = mot_sequences(cfg, root)
    weights = weights_path(cfg)
    model, skippable, knob, _ = prepare_model(cfg, root, weights)  # the CPU budget: a skip marker on the CPU only
    seq = need("passbench.datasets.mot", "load_sequence")(str(seq_dirs[0]))
    frames = timing_inputs(cfg, seq)  # as run times them
    speed = measure_speed(cfg, model, skippable, frames)
    rec = speed_record(
        experiment=cfg.name, task=cfg.task,
        model={"name": cfg.model.name, "tag": "trained" if weights else "init",
               "weights_sha256": file_sha256(weights) if weights else None},
        method={"name": cfg.method.name, "params": dict(cfg.method.params), "knob": knob},
        speed=speed, config=to_dict(cfg), env=run_env(dev, cfg.speed.precision))
    if write:
        append_record(records_file(cfg, results), rec)
    return rec


__all__ = ["SkipRow", "run_speed"]
