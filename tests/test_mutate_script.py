"""``scripts/mutate.py``'s recheck: a recorded survivor's diff (as ``mutmut show`` prints it) applied to a copy of
the sources, for a module-level function and for a method (which mutmut shows dedented to the left margin)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from passbench.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "mutate.py"
_spec = importlib.util.spec_from_file_location("mutate_script", SCRIPT)
M = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(M)

SOURCE = '''def f(x):
    return x + 1


class A:
    def g(self):
        return {"frames": 1,
                "protocol": 2}
'''


def _diff(*body: str) -> str:
    return "\n".join(["--- pkg/m.py", "+++ pkg/m.py", "@@ -1,3 +1,3 @@", *body]) + "\n"


def test_apply_a_function_hunk_and_a_dedented_method_hunk(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    src = tmp_path / "pkg" / "m.py"
    src.write_text(SOURCE)
    assert M._apply(tmp_path, _diff(" def f(x):", "-    return x + 1", "+    return x - 1"))
    assert "return x - 1" in src.read_text()
    # the method as mutmut shows it: body one level in, not two
    method = _diff(" def g(self):", '-    return {"frames": 1,', '+    return {"XXframesXX": 1,',
                   '             "protocol": 2}')
    assert M._apply(tmp_path, method)
    text = src.read_text()
    assert '        return {"XXframesXX": 1,\n                "protocol": 2}\n' in text and '"frames"' not in text
    # a hunk whose old lines are not in the file (or occur twice) is not applied, and the file is left as it was
    before = src.read_text()
    assert not M._apply(tmp_path, _diff("-    return x * 3", "+    return x * 4"))
    assert src.read_text() == before


DOC_METHOD = '''class B:
    def h(self, x):
        """First line of the docstring,
        its continuation line."""
        y = x + 1
        return y
'''


def test_apply_a_method_hunk_whose_docstring_mutmut_shows_undedented(tmp_path: Path):
    # mutmut dedents a method's code lines but not its docstring's continuation lines: the full hunk matches at
    # no one indentation, the changed line with its code context does (and only there)
    (tmp_path / "pkg").mkdir()
    src = tmp_path / "pkg" / "m.py"
    src.write_text(DOC_METHOD)
    hunk = _diff(" def h(self, x):", '     """First line of the docstring,', '         its continuation line."""',
                 "-    y = x + 1", "+    y = x - 1", "     return y")
    assert M._apply(tmp_path, hunk)
    assert src.read_text() == DOC_METHOD.replace("y = x + 1", "y = x - 1")


TWO_METHODS = '''class C:
    def reset(self):
        """Doc,
        more."""
        self.a = self.b = self.c = False

    def other(self):
        if True:
            self.a = self.b = False
'''


def test_apply_with_the_mutants_name_matches_only_inside_its_function(tmp_path: Path):
    # A diff recorded before reset's line changed: with less context its old line matches other's line (same
    # text one level deeper), which is not the mutant. With the name, only reset's lines count.
    (tmp_path / "pkg").mkdir()
    src = tmp_path / "pkg" / "m.py"
    src.write_text(TWO_METHODS)
    stale = _diff(" def reset(self):", '     """Doc,', '         more."""', "-    self.a = self.b = False",
                  "+    self.a = self.b = None")
    assert not M._apply(tmp_path, stale, "pkg.m.xǁCǁreset__mutmut_3")
    assert src.read_text() == TWO_METHODS
    fresh = _diff(" def reset(self):", '     """Doc,', '         more."""', "-    self.a = self.b = self.c = False",
                  "+    self.a = self.b = self.c = None")
    assert M._apply(tmp_path, fresh, "pkg.m.xǁCǁreset__mutmut_3")
    assert src.read_text() == TWO_METHODS.replace("self.c = False", "self.c = None")
    # a module-level function's name (x_ prefix) and one that is not in the file
    src.write_text("def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x + 1\n")
    assert M._apply(tmp_path, _diff("-    return x + 1", "+    return x - 1"), "pkg.m.x_g__mutmut_1")
    assert src.read_text() == "def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x - 1\n"
    assert not M._apply(tmp_path, _diff("-    return x + 1", "+    return x * 2"), "pkg.m.x_h__mutmut_1")


def test_recheck_in_parallel_keeps_the_diff_files_order_and_each_status(tmp_path: Path, monkeypatch):
    # Four recorded survivors checked two at a time: the statuses come from each diff's own test run (stand-in:
    # the exit code written in the diff), listed in the diff file's order whatever order the runs end in.
    import time

    codes = {"a": 1, "b": 0, "c": M.TIMEOUT, "d": None, "e": 1}  # killed, survived, timeout, not applied
    delays = {"a": 0.5, "b": 0.0, "c": 0.2, "d": 0.0, "e": 0.0}  # a ends after e

    def fake(module, patch_text, keyword, timeout=None, name=None):
        if patch_text is None:
            return 0  # the clean run
        name = patch_text.split("+++ ", 1)[1][0]
        time.sleep(delays[name])
        return codes[name]

    monkeypatch.setattr(M, "_tests_in_copy", fake)
    monkeypatch.setattr(M, "REPO", tmp_path)
    monkeypatch.setattr(M, "SCRATCH", tmp_path / "runs")
    blocks = [f"# pkg.m.x_f__mutmut_{n}: survived\n--- pkg/m.py\n+++ {n}\n@@ -1 +1 @@\n-x\n+y\n" for n in "dcbae"]
    diff = tmp_path / "survivors.diff"
    diff.write_text("\n".join(blocks))
    out = M.recheck("passbench/skip/macs.py", diff, jobs=2)
    assert out["killed"] == ["pkg.m.x_f__mutmut_a", "pkg.m.x_f__mutmut_e"]
    assert out["survived"] == ["pkg.m.x_f__mutmut_b"]
    assert out["timeout"] == ["pkg.m.x_f__mutmut_c"]
    assert out["not applied"] == ["pkg.m.x_f__mutmut_d"]
    two = M.recheck("passbench/skip/macs.py", diff, jobs=2)  # written to the scratch folder, same each time
    assert (tmp_path / "runs" / "skip_macs" / "recheck.json").exists() and two == out
