"""The model registry: ``MODELS`` (name -> builder) and ``MODEL_SPECS`` (name -> ``ModelSpec``).

Family packages register their builders here with ``register_model`` (``passbench.models`` the MOT
models, ``passbench.models.pose`` the 3D pose models); ``passbench.models`` is the public face that
builds and measures them. Imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from passbench.registry import Registry

__all__ = ["MODELS", "MODEL_SPECS", "ModelSpec", "no_pretrained", "register_model"]

MODELS = Registry("models")


@dataclass(frozen=True)
class ModelSpec:
    """Metadata of a registered model.

    Attributes:
        name: registry name.
        input_wh: benchmark input (width, height) in pixels.
        family: source file / backbone family.
        paper_row: the Table 3 row it stands for (None: no paper row).
        description: one line.
    """

    name: str
    input_wh: tuple[int, int]
    family: str
    paper_row: str | None
    description: str


MODEL_SPECS: dict[str, ModelSpec] = {}


def register_model(name: str, input_wh: tuple[int, int], family: str, paper_row: str | None, description: str
                   ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a builder ``fn(pretrained=False, **kw) -> nn.Module`` under ``name`` in
    ``MODELS`` and its metadata in ``MODEL_SPECS`` (a duplicate name raises)."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        MODELS.register(name)(fn)
        MODEL_SPECS[name] = ModelSpec(name, tuple(input_wh), family, paper_row, description)
        return fn

    return deco


def no_pretrained(name: str, pretrained: Any) -> None:
    """For models without timm / torchvision ImageNet weights: anything but random init is an error."""
    from passbench.models.pretrained import refuse  # noqa: PLC0415

    refuse(name, pretrained)
