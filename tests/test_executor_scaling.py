"""``scripts/executor_scaling.py``: the N-worker prediction the README quotes for Ray sweeps, from a measured run's
per-row task times; list scheduling worked by hand, the log parsed as the board prints it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from passbench.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "executor_scaling.py"
_spec = importlib.util.spec_from_file_location("executor_scaling", SCRIPT)
S = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(S)


def test_longest_first_list_schedule_worked_by_hand():
    # 3 -> A, 3 -> B, 2 -> A (5), 2 -> B (5), 2 -> A (7): LPT gives 7 where the optimum is 6
    assert S.lpt([2, 3, 2, 3, 2], 2) == 7
    assert S.lpt([2, 3, 2, 3, 2], 1) == 12
    assert S.lpt([2, 3, 2, 3, 2], 8) == 3  # never below the longest row


def test_row_times_read_the_board_lines_and_the_last_try_of_a_row(tmp_path: Path):
    log = tmp_path / "ray.log"
    log.write_text("W1202 a warning: [9 s on x]\n"
                   "tradeoff/dense: MOTA 51.6 %  IDF1 59.6 %  FPS not timed  [31 s on 10.0.0.1]\n"
                   "tradeoff/pass_p_r20: MOTA 51.5 %  FPS not timed  [40 s on 10.0.0.2]\n"
                   "tradeoff/pass_p_r20: MOTA 51.5 %  FPS not timed  [35.5 s on 10.0.0.1]\n"
                   "[##########] 2/2 rows\n")
    assert S.row_times(log) == {"tradeoff/dense": 31.0, "tradeoff/pass_p_r20": 35.5}


def test_prediction_adds_the_measured_fixed_cost(tmp_path: Path):
    log = tmp_path / "ray.log"
    log.write_text("".join(f"t/r{i}: x  [{s} s on n]\n" for i, s in enumerate([2, 3, 2, 3, 2])))
    out = subprocess.run([sys.executable, str(SCRIPT), str(log), "--wall", "10", "--workers", "1", "2", "4"],
                         capture_output=True, text=True, check=True).stdout
    rows = {int(line.split()[0]): float(line.split()[1]) for line in out.splitlines()[2:]}
    assert rows == {1: 15.0, 2: 10.0, 4: 7.0}  # schedules 12, 7, 4 s plus the fixed cost 10 - 7 = 3 s
