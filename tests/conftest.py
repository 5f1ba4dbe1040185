"""Every test starts from the same process-wide torch state, whatever ran before it.

torch's intra-op thread count is process state that the runner changes (``passbench.device.set_threads``
holds a row to ``speed.threads``) and that changes float reduction order, so a short training run in a
later test followed another trajectory depending on which tests preceded it (``test_pass_p.py`` failed in
the full suite and passed alone). Each test gets the thread count the session started with back.
"""

import pytest
import torch

_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    yield
    if torch.get_num_threads() != _THREADS:
        torch.set_num_threads(_THREADS)
