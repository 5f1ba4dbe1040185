"""The claims ledger: the query language and the verdicts on fixture records (a claim that holds, one that
fails, one with no record; seeds and timing rounds that make a comparison inconclusive), claims.yaml's
checks (quotes are the paper's words, numbers typed into checks appear in their quote, errors name file
and line), and ``passbench claims``.

Fixture records here are synthetic (``FIXTURE`` dataset, invented numbers), never results.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from passbench import cli
from passbench import records as R
from passbench.paths import REPO_ROOT
from passbench.report.claimfile import ClaimsError, claims_by_experiment, load_claims, split_expect
from passbench.report.claims import build, claim_links, evaluate_claims
from passbench.report.query import Context, QueryError, Unmeasured, evaluate, parse
from test_records import fixture_run

PAPER_MD = REPO_ROOT.parent / "shared" / "papers" / "pass-aaai23.md"
REFERENCE_MD = REPO_ROOT.parent / "shared" / "REFERENCE.md"


def _run(exp: str, mota: float, skip: float = 0.4, created: str = "2030-01-01T00:00:00Z", **over) -> dict:
    rec = fixture_run(exp, metrics__mota=mota, cost__patch_skip_rate=skip, **over)
    rec["created_utc"] = created
    return rec


def _speed(exp: str, ratio: float, rounds: list[float] | None = None, load: tuple[float, float] | None = None,
           others: float | None = None) -> dict:
    sp = {"fps": 10.0 * ratio, "fps_dense": 10.0, "speedup": ratio, "latency_ms_p50": 100.0 / ratio,
          "latency_ms_p90": 110.0 / ratio, "device": "cpu: fixture", "threads": 1, "precision": "fp32", "batch": 1,
          "timed_region": "model forward"}
    if rounds is not None:
        sp.update(rounds=len(rounds), speedup_rounds=rounds, speedup_spread=max(rounds) - min(rounds))
    if load is not None:
        sp.update(load_1m_before=load[0], load_1m_after=load[1], cpu_cores=2, loaded=max(load) > 2)
    if others is not None:  # the timing's 1 thread leaves 1 of the 2 cores free
        sp.update(load_1m_before=3.0, load_1m_after=3.0, cpu_cores=2, others_cpu_cores=others, loaded=others > 1.25)
    return R.speed_record(experiment=exp, task="mot", model={"name": "fixture_net", "tag": "fixture", "weights_sha256": None},
                          method={"name": "pass_p", "params": {}}, speed=sp, config={"name": exp, "table": exp.split("/")[0]},
                          env={"git_sha": "0" * 40, "dirty": False, "python": "3.11", "torch": "x", "device": "cpu"})


# ----------------------------------------------------------------------------------------------
# the query language


def test_arithmetic_on_records_and_the_paper():
    ctx = Context([_run("t/a", 0.50), _run("t/b", 0.30, skip=0.25)])
    assert evaluate('mota("t/a") - mota("t/b")', ctx).value == pytest.approx(0.20)
    assert evaluate('-(mota("t/a") + 1) * 2 / 4', ctx).value == pytest.approx(-0.75)
    assert evaluate('max(mota("t/a"), skip("t/b"), 0.1) - min(0.2, abs(-0.5))', ctx).value == pytest.approx(0.30)
    # the fixture's cost: executed 1.0, gate 0.1, dense 2.0 GMACs -> R_m with the gate charged 1 - 1.1 / 2
    assert evaluate('gmacs("t/a") + gate_gmacs("t/a")', ctx).value == pytest.approx(1.1)
    assert evaluate('1 - (gmacs("t/a") + gate_gmacs("t/a")) / dense_gmacs("t/a")', ctx).value == pytest.approx(0.45)
    # Table 3 (transcribed): PASS-F 39 FPS over FairMOT's 31
    assert evaluate('paper("table3", "pass_f", "fps") / paper("table3", "fairmot_dla34", "fps")', ctx).value == pytest.approx(39 / 31)
    assert evaluate('paper("table3", "pass_f", "fps_ratio_to_dense")', ctx).value == pytest.approx(39 / 31)
    ev = evaluate('mota("t/a") - mota("t/b")', ctx)
    assert [v.label for v in ev.lookups] == ["mota(t/a)", "mota(t/b)"] and ev.variants == [] and ev.spread is None


@pytest.mark.parametrize("expr, needle", [
    ('mota("t/a") ** 2', "operator Pow"),
    ('__import__("os")', "unknown function '__import__'"),
    ('mota(t/a)', "bare name 't'"),
    ('mota("t/a").real', "Attribute not supported"),
    ('mota("t/a") >', "not an expression"),
    ('mota("t/a", "x")', "takes 1 string argument"),
    ('paper("table3", "nobody", "mota")', "no such row / column"),
    ('ref("nothing")', "not in claims.yaml references"),
    ('mota("t/a") / 0', "division by zero"),
])
def test_bad_queries_are_refused_with_the_reason(expr, needle):
    ctx = Context([_run("t/a", 0.5)])
    with pytest.raises(QueryError, match=re.escape(needle)):
        evaluate(expr, ctx)


def test_missing_measurements_say_why():
    marker = R.skip_marker(experiment="t/heavy", task="mot", reason="over this CPU budget", config={})
    smoke = _run("t/smoke", 0.4)
    smoke["dataset"]["protocol"] = "smoke"
    untimed = _run("t/untimed", 0.4, speed__fps=None, speed__fps_dense=None)
    ctx = Context([marker, smoke, untimed])
    cases = [('mota("t/none")', "no record"), ('mota("t/heavy")', "not runnable here: over this CPU budget"),
             ('mota("t/smoke")', "its run is smoke"), ('fps_ratio("t/untimed")', "not timed"),
             ('metric("t/untimed", "metrics.per_camera.fixed.mpjpe_mm")', "no number at")]
    for expr, why in cases:
        with pytest.raises(Unmeasured, match=re.escape(why)):
            evaluate(expr, ctx)


def test_seed_twins_give_one_value_per_seed():
    recs = [_run("table3/pass_f", 0.50), _run("seeds/table3/pass_f_s1", 0.47), _run("seeds/table3/pass_f_s2", 0.52),
            _run("table3/dense_light", 0.51)]
    ctx = Context(recs)
    ev = evaluate('mota("table3/pass_f") - mota("table3/dense_light")', ctx)
    assert ev.value == pytest.approx(-0.01)
    assert ev.variants == pytest.approx([-0.01, -0.04, 0.01])  # seed 0 = the experiment itself, then s1, s2
    assert ev.spread == pytest.approx((-0.04, 0.01)) and ev.kinds == ["seed"]


def test_borrowed_seed_deviations():
    recs = [_run("table3/pass_f", 0.50), _run("seeds/table3/pass_f_s1", 0.47), _run("tradeoff/pass_f_r40", 0.40)]
    ctx = Context(recs, noise={"table3/pass_f": ["tradeoff/pass_f_*"]})
    ev = evaluate('mota("tradeoff/pass_f_r40")', ctx)
    assert ev.variants == pytest.approx([0.40, 0.37])  # the source's seed deviation (-0.03) added
    assert ev.kinds == ["seed, borrowed from table3/pass_f"]
    assert evaluate('mota("tradeoff/pass_f_r40")', Context(recs)).variants == []  # nothing borrowed without `noise`


def test_timing_rounds_and_load_notes():
    ctx = Context([_run("t/a", 0.5), _speed("t/a", 0.9, rounds=[0.8, 1.1, 0.95], load=(0.5, 3.5))])
    v = evaluate('fps_ratio("t/a")', ctx)
    assert v.value == pytest.approx(0.9) and v.variants == pytest.approx([0.8, 1.1, 0.95]) and v.kinds == ["round"]
    assert v.lookups[0].notes == ("t/a: timed under load 3.5 > 2 cores",)
    busy = Context([_run("t/c", 0.5), _speed("t/c", 0.9, others=1.6)])
    assert evaluate('fps_ratio("t/c")', busy).lookups[0].notes == (
        "t/c: timed under load: other processes kept 1.6 of 2 cores busy beside 1 timing thread(s)",)
    # a load average of 3 on 2 cores, but other processes used one core, the one the timing left free: no note
    assert evaluate('fps_ratio("t/c")', Context([_run("t/c", 0.5), _speed("t/c", 0.9, others=1.0)])
                    ).lookups[0].notes == ()
    old = evaluate('fps_ratio("t/b")', Context([_run("t/b", 0.5)]))  # the run's own timing: 10 / 8 FPS
    assert old.value == pytest.approx(1.25) and "machine load not recorded" in old.lookups[0].notes[0]


# ----------------------------------------------------------------------------------------------
# verdicts on fixture records


FIXTURE_CLAIMS = """\
groups: [{key: g, title: Fixture}]
settings: {cpu: "a CPU"}
claims:
  - id: holds-claim
    group: g
    source: Fixture
    quote: "a quote"
    claim: "A is above B"
    fmt: pp
    checks:
      - {measure: 'mota("t/a") - mota("t/b")', expect: ">= 0"}
  - id: fails-claim
    group: g
    source: Fixture
    quote: "a quote"
    claim: "B is above A"
    fmt: pp
    checks:
      - {measure: 'mota("t/b") - mota("t/a")', expect: ">= 0"}
  - id: no-record-claim
    group: g
    source: Fixture
    quote: "a quote"
    claim: "C is above A"
    checks:
      - {measure: 'mota("t/c") - mota("t/a")', expect: ">= 0"}
  - id: noisy-claim
    group: g
    source: Fixture
    quote: "a quote"
    claim: "PASS-F is above dense"
    fmt: pp
    checks:
      - {measure: 'mota("table3/pass_f") - mota("table3/dense_light")', expect: ">= 0"}
  - id: timing-claim
    group: g
    source: Fixture
    quote: "a quote"
    claim: "A runs faster than its dense twin"
    fmt: x
    checks:
      - {measure: 'fps_ratio("t/a")', expect: "> 1"}
  - id: where-claim
    group: g
    source: Fixture
    quote: "a quote"
    claim: "A is above B, or the heavy row"
    checks:
      - {under: "against B", measure: 'mota("t/a") - mota("t/b")', expect: ">= 0"}
      - {under: "against dense", measure: 'mota("t/a") - mota("table3/dense_light")', expect: ">= 0"}
      - {under: "against the heavy row", measure: 'mota("t/a") - mota("t/heavy")', expect: ">= 0"}
  - id: paper-claim
    group: g
    kind: inconsistency
    source: Fixture
    quote: "by up to 12.19"
    claim: "Table 3's ratio is 12.19x"
    paper: 'paper("table3", "pass_f", "fps") / paper("table3", "fairmot_dla34", "fps")'
    fmt: x
    checks:
      - {measure: 'paper("table3", "pass_f", "fps") / paper("table3", "fairmot_dla34", "fps")', expect: "== 12.19", tol: 0.005}
  - id: untestable-claim
    group: g
    source: Fixture
    quote: "a quote"
    claim: "Something"
    not_testable: "because"
"""


def _fixture_claims(tmp_path: Path, text: str = FIXTURE_CLAIMS) -> dict:
    p = tmp_path / "claims.yaml"
    p.write_text(text)
    return load_claims(p)


def _verdicts(recs: list[dict], tmp_path: Path) -> dict[str, str]:
    data = _fixture_claims(tmp_path)
    return {r.claim["id"]: r.verdict for r in evaluate_claims(data, Context(recs))}


BASE = [_run("t/a", 0.50), _run("t/b", 0.30), _run("table3/pass_f", 0.50), _run("table3/dense_light", 0.49),
        R.skip_marker(experiment="t/heavy", task="mot", reason="over this CPU budget", config={})]


def test_a_claim_that_holds_one_that_fails_one_without_a_record(tmp_path):
    v = _verdicts(BASE + [_speed("t/a", 1.2)], tmp_path)
    assert v["holds-claim"] == "holds"
    assert v["fails-claim"] == "does not hold"
    assert v["no-record-claim"] == "not measured yet"
    assert v["noisy-claim"] == "holds"  # one seed only: the verdict stands, the spread is said to be unmeasured
    assert v["timing-claim"] == "holds"
    assert v["where-claim"] == "holds only under against B; against dense"  # the heavy row cannot run here
    assert v["paper-claim"] == "paper inconsistent"  # 39 / 31 is not 12.19
    assert v["untestable-claim"] == "not measurable here"


def test_a_comparison_inside_the_seed_spread_is_inconclusive(tmp_path):
    seeds = [_run("seeds/table3/pass_f_s1", 0.47), _run("seeds/table3/pass_f_s2", 0.52)]
    assert _verdicts(BASE + seeds, tmp_path)["noisy-claim"] == "inconclusive"  # seed 1 is below dense
    agree = [_run("seeds/table3/pass_f_s1", 0.495), _run("seeds/table3/pass_f_s2", 0.52)]
    assert _verdicts(BASE + agree, tmp_path)["noisy-claim"] == "holds"  # every seed above dense


def test_timing_rounds_or_load_make_a_speed_verdict_inconclusive(tmp_path):
    assert _verdicts(BASE + [_speed("t/a", 1.2, rounds=[1.1, 1.3, 1.25])], tmp_path)["timing-claim"] == "holds"
    assert _verdicts(BASE + [_speed("t/a", 1.2, rounds=[0.9, 1.3, 1.25])], tmp_path)["timing-claim"] == "inconclusive"
    loaded = _speed("t/a", 1.2, rounds=[1.1, 1.3, 1.25], load=(1.0, 4.0))
    assert _verdicts(BASE + [loaded], tmp_path)["timing-claim"] == "inconclusive"


def test_the_ledger_names_values_records_and_noise(tmp_path):
    res = tmp_path / "res"
    for r in BASE + [_speed("t/a", 1.2)]:
        R.append_record(res / "records" / "fixture.jsonl", r)
    _fixture_claims(tmp_path)
    md = build(res, tmp_path / "claims.yaml")
    assert "Verdicts: " in md and "(8 claims)" in md
    assert "| [holds-claim](#holds-claim) | Fixture | – | +20.0 pts | holds |" in md
    assert "### no-record-claim" in md and "t/c: no record" in md
    block = md.split("### noisy-claim")[1].split("###")[0]
    assert "from mota(table3/pass_f) 50.0 % (skip 40.0 %), mota(table3/dense_light) 49.0 % (skip 40.0 %)" in block
    assert "seed spread not measured" in block and f"`table3/pass_f` ({BASE[2]['run_id'][:8]})" in block
    assert "machine load not recorded" in md.split("### timing-claim")[1].split("###")[0]
    assert build(res, tmp_path / "claims.yaml") == md  # deterministic


# ----------------------------------------------------------------------------------------------
# claims.yaml


def test_claims_file_errors_name_file_line_and_field(tmp_path):
    bad = FIXTURE_CLAIMS.replace("    claim: \"B is above A\"\n", "    claim: \"B is above A\"\n    colour: red\n")
    with pytest.raises(ClaimsError, match=r"claims.yaml:12: claim fails-claim: unknown field\(s\) \['colour'\]"):
        _fixture_claims(tmp_path, bad)
    bad = FIXTURE_CLAIMS.replace('expect: ">= 0"}', 'expect: "at least 0"}', 1)
    with pytest.raises(ClaimsError, match=r"claims.yaml:\d+: claim holds-claim: field 'checks\[0\].expect'"):
        _fixture_claims(tmp_path, bad)
    bad = FIXTURE_CLAIMS.replace("id: fails-claim", "id: holds-claim")
    with pytest.raises(ClaimsError, match="field 'id': duplicate"):
        _fixture_claims(tmp_path, bad)
    bad = FIXTURE_CLAIMS.replace('    not_testable: "because"\n', "")
    with pytest.raises(ClaimsError, match="give either 'checks'"):
        _fixture_claims(tmp_path, bad)
    bad = FIXTURE_CLAIMS.replace("mota(\"t/b\") - mota(\"t/a\")", "mota(t/b)")
    (tmp_path / "bad.yaml").write_text(bad)
    rc = cli.main(["--results-dir", str(tmp_path), "claims", "--claims", str(tmp_path / "bad.yaml"),
                   "--out", str(tmp_path / "out.md")])
    assert rc == 2 and not (tmp_path / "out.md").exists()  # a usage error, nothing written


def _normal(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.skipif(not PAPER_MD.is_file(), reason=f"paper text not at {PAPER_MD}")
def test_every_quote_is_the_papers_words():
    paper = _normal(PAPER_MD.read_text())
    data = load_claims()
    missing = [(c["id"], q) for c in data["claims"] for q in c["quote"] if _normal(q) not in paper]
    assert not missing, missing
    reference = _normal(REFERENCE_MD.read_text())
    for name, r in data["reference_sources"].items():
        assert _normal(r["quote"]) in reference, name
        assert any(f"{v:g}" in r["quote"] for v in (r["value"], 100 * r["value"])), name  # the value is the quote's


def test_numbers_typed_into_checks_appear_in_their_quote():
    """A claim's or an inconsistency's `expect` may only type the paper's numbers that its quote holds (0, 1 and
    100 aside): a transcription slip fails here."""
    for c in load_claims()["claims"]:
        if c["kind"] == "finding":
            continue
        quoted = " ".join(c["quote"])
        typed = [n for chk in c["checks"] for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", split_expect(chk["expect"])[1])]
        typed += re.findall(r"(?<![\w.])\d+(?:\.\d+)?", c["paper"] or "") if not (c["paper"] or "").startswith(("paper", "1 -")) else []
        bad = [n for n in typed if n not in ("0", "1", "100") and n not in quoted]
        assert not bad, (c["id"], bad)


def test_notes_hold_no_measured_numbers():
    """Measured numbers live in the records: a number in hand-written prose would go stale."""
    data = load_claims()
    texts = [(c["id"], c["note"]) for c in data["claims"]] + [(k, v) for k, v in data["settings"].items()]
    bad = [(k, t) for k, t in texts if re.search(r"(?<![\w.])\d+\.\d+(?![\w.])|\d+ ?%", t)]
    assert not bad, bad


def test_every_query_parses_and_ids_are_anchors():
    data = load_claims()
    for c in data["claims"]:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", c["id"])
        for chk in c["checks"]:
            parse(chk["measure"])
            parse(split_expect(chk["expect"])[1].replace("{paper}", f"({c['paper']})"))
    by_exp = claims_by_experiment()
    assert "t3-f-mota" in by_exp["table3/pass_f"] and "t3-f-mota" in by_exp["table3/dense_light"]
    links = claim_links(["table3/pass_f", "no/such"], base="claims.md")
    assert "[t3-f-mota](claims.md#t3-f-mota)" in links and "no/such" not in links


def test_the_paper_is_covered():
    """Every PASS cell of Tables 1-4, the headline numbers, the gate claims and the inconsistencies have an entry."""
    ids = {c["id"] for c in load_claims()["claims"]}
    cells = [f"t1-{r}-{c}" for r in "pf" for c in ("mpjpe", "gmacs", "fps", "skip")]
    cells += [f"t2-{r}-{a}" for r in "pf" for a in ("talking", "eating", "greeting", "phoning", "photo", "walk", "walkdog")]
    cells += [f"t3-{r}-{c}" for r in "pf" for c in ("mota", "idf1", "idp", "ids", "gmacs", "mem", "fps", "skip")]
    cells += [f"t4-{r}-{s}" for r in "pf" for s in ("square", "night", "bus", "market")]
    cells += ["abs-pose-speedup", "abs-mot-speedup", "intro-pose-skip-macs", "intro-mot-skip-macs", "gate-plug-and-play",
              "gate-lightweight", "gate-no-labels", "gate-finetune-optional", "inc-mot-speedup", "inc-fairmot-mota",
              "inc-fairmot-split-hypothesis", "f4-mpjpe-falls-with-macs", "f5-best-tradeoff"]
    assert not [c for c in cells if c not in ids]


def test_passbench_claims_writes_and_checks(tmp_path, capsys):
    res = tmp_path / "res"
    for r in BASE:
        R.append_record(res / "records" / "fixture.jsonl", r)
    claims = tmp_path / "claims.yaml"
    _fixture_claims(tmp_path)
    args = ["--results-dir", str(res), "claims", "--claims", str(claims)]
    assert cli.main([*args, "--check"]) == 1  # no ledger yet: stale
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and (res / "claims.md").is_file()
    assert cli.main([*args, "--check"]) == 0
    R.append_record(res / "records" / "fixture.jsonl", _run("t/b", 0.60, created="2031-01-01T00:00:00Z"))
    assert cli.main([*args, "--check"]) == 1  # a record changed: the ledger is stale
    assert "is stale" in capsys.readouterr().err


def test_tolerances_by_hand():
    from passbench.report.query import compare

    assert compare(">=", -0.009, 0.0, tol=0.01) and not compare(">=", -0.011, 0.0, tol=0.01)  # within one point
    assert compare("<=", 0.9, 0.0, tol=1.0) and not compare("<=", 1.1, 0.0, tol=1.0)  # within one millimetre
    assert compare("==", 1.258, 1.26, tol=0.005) and not compare("==", 39 / 31, 12.19, tol=0.005)
    assert not compare(">", 0.0, 0.0) and compare(">=", 0.0, 0.0) and compare("<", -1e-9, 0.0)
    with pytest.raises(QueryError, match="unknown comparison"):
        compare("!=", 1.0, 2.0)


def test_a_bad_paper_reference_names_the_claim_and_line(tmp_path, capsys):
    bad = FIXTURE_CLAIMS.replace('paper: \'paper("table3", "pass_f", "fps")', 'paper: \'paper("table3", "pass_x", "fps")')
    (tmp_path / "bad.yaml").write_text(bad)
    rc = cli.main(["--results-dir", str(tmp_path), "claims", "--claims", str(tmp_path / "bad.yaml"),
                   "--out", str(tmp_path / "out.md")])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(r"bad.yaml: line \d+: claim paper-claim: paper\('table3', 'pass_x', 'fps'\)", err), err
    assert not (tmp_path / "out.md").exists()
