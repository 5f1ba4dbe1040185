"""The devices the engine's exactness tests run on: the CPU always, CUDA (marked ``gpu``) where there is one."""

import pytest
import torch

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu,
                                           pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]),
]
