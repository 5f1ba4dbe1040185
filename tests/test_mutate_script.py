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
