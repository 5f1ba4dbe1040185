"""The committed results/ are what the records say: every table under results/tables/ and the claims ledger
results/claims.md equal their regeneration from the committed records (CI fails when a record changes and
a derived file was not regenerated), and no committed record holds a machine's absolute path."""

from __future__ import annotations

import re

import pytest

from passbench.paths import RESULTS
from passbench.records import read_records
from passbench.report import claims, tables, tradeoff

RECORDS = read_records(RESULTS / "records")
REGENERATE = {  # file -> how to regenerate it, as the command named in README does
    **{f"table{n}.{ext}": (lambda n=n, ext=ext: tables.render(n, tables.build_table(n, RECORDS), ext))
       for n in (1, 2, 3, 4) for ext in ("md", "csv")},
    **{name: (lambda name=name: tradeoff.texts(RECORDS)[name]) for name in tradeoff.texts(RECORDS)},
}
COMMANDS = {"table": "passbench table N (or invoke reproduce --table N)", "other": "passbench figure tradeoff"}


def test_every_committed_table_is_derived():
    committed = sorted(p.name for p in (RESULTS / "tables").iterdir() if p.suffix in (".md", ".csv"))
    assert committed and not [n for n in committed if n not in REGENERATE], "a table nothing regenerates"


@pytest.mark.parametrize("name", sorted(REGENERATE))
def test_committed_table_equals_its_regeneration(name: str):
    path = RESULTS / "tables" / name
    if not path.is_file():
        pytest.skip(f"{name} is not committed")
    cmd = COMMANDS["table" if name.startswith("table") else "other"]
    assert path.read_text() == REGENERATE[name](), f"results/tables/{name} is stale: run `{cmd}`"


def test_committed_claims_ledger_equals_its_regeneration():
    assert (RESULTS / "claims.md").read_text() == claims.build(RESULTS), \
        "results/claims.md is stale: run `passbench claims`"


_ABS = re.compile(r"(?:^|[\s'\"(=:,\[])(/[^\s/'\"]+(?:/[^\s'\"]*)+)")


def _strings(node, where=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{where}[{i}]")
    elif isinstance(node, str):
        yield where, node


def test_no_committed_record_holds_an_absolute_path():
    """Records name the data root as given (../shared/data, $PASSBENCH_DATA), never this machine's path."""
    assert _ABS.search("sequence X not under data root /work/shared/data")  # the pattern finds what it must
    assert not _ABS.search("FPS / dense, input letterboxed (no decode / tracking) at ../shared/data")
    bad = []
    for f in sorted((RESULTS / "records").glob("*.jsonl")):
        for i, rec in enumerate(read_records(f), start=1):
            bad += [f"{f.name}:{i}{where}: {s}" for where, s in _strings(rec) if _ABS.search(s)]
    assert not bad, "\n".join(bad[:10])


def test_the_ledger_names_the_records_it_read():
    """A changed record changes the ledger: every claim section names the run ids it read."""
    text = (RESULTS / "claims.md").read_text()
    ids = set(re.findall(r"`[^`]+` \(([0-9a-f]{8})\)", text))
    runs = {r["run_id"][:8] for r in RECORDS}
    assert ids and ids <= runs
