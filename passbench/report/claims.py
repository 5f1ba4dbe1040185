"""The paper-claims ledger: every claim of ``results/claims.yaml`` evaluated on the records.

``passbench claims`` (= ``invoke claims``) writes ``results/claims.md``: per claim the paper's number,
passbench's closest measurement (value, setting, records, how the setting differs from the paper's),
a verdict and one line of why. Generated, never edited: a test checks that the committed file equals
its regeneration from the committed records.

Verdicts. Each check of a claim (``measure`` compared with ``expect``) is evaluated on the records
(``passbench.report.query``) and, where the records hold repeats, once per seed or timing round:

* **holds** / **does not hold**: the comparison holds (fails) for the measurement and for every seed
  or round measured;
* **inconclusive**: it holds for some seeds or rounds and not for others (the comparison is inside the
  measured spread), or the timing was taken under a load above the cores;
* a claim whose checks disagree **holds only under** the conditions (``under``) where it holds;
* **not measured yet**: a record it needs does not exist (or is a smoke run); **not measurable here**:
  the row cannot run on this machine (a skip marker), or the claim says why it cannot be tested;
* the paper's inconsistencies (``kind: inconsistency``) are checks on the paper's own numbers:
  **paper inconsistent** when its numbers contradict each other, **paper consistent** otherwise.

Without seed or round repeats a verdict rests on one measurement, and the line of why says that the
spread is not measured. Imports no torch.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from passbench.records import read_records, records_dir, results_dir
from passbench.report.claimfile import (CLAIMS, ClaimsError, claim_links, experiments_of, load_claims,  # noqa: F401
                                        split_expect)
from passbench.report.query import Context, Evaluation, QueryError, Unmeasured, evaluate, compare, parse

HOLDS, FAILS, INCONCLUSIVE, UNMEASURED, UNMEASURABLE = "holds", "does not hold", "inconclusive", "not measured yet", \
    "not measurable here"
VERDICTS = (HOLDS, FAILS, "holds only under ...", INCONCLUSIVE, UNMEASURED, UNMEASURABLE, "paper inconsistent",
            "paper consistent")


@dataclass
class CheckResult:
    """One check: its status (a verdict word), the two sides, the spread and what was read."""

    under: str
    status: str
    op: str = ""
    lhs: Evaluation | None = None
    rhs: Evaluation | None = None
    reason: str = ""  # why it is unmeasured, or what made it inconclusive
    tol: float = 0.0


@dataclass
class ClaimResult:
    claim: dict[str, Any]
    verdict: str
    paper_value: float | None
    checks: list[CheckResult] = field(default_factory=list)


def fmt_value(v: float | None, fmt: str) -> str:
    """A number in a claim's display style (``pct`` 49.2 %, ``pp`` -2.4 pts, ``x`` 0.69x, ...)."""
    if v is None:
        return "–"
    if fmt == "pct":
        return f"{100 * v:.1f} %"
    if fmt == "pp":
        return f"{100 * v:+.1f} pts"
    if fmt == "x":
        return f"{v:.2f}x"
    if fmt == "mm":
        return f"{v:.1f} mm"
    if fmt == "dmm":
        return f"{v:+.1f} mm"
    if fmt == "dint":
        return f"{v:+.0f}"
    if fmt == "gmacs":
        return f"{v:.3f} GMACs"
    if fmt == "int":
        return f"{v:.0f}"
    return f"{v:.3g}"


def check_queries(data: dict[str, Any], path: Path) -> None:
    """Parse every query of ``data`` (raises :class:`ClaimsError` naming the claim's line)."""
    for c in data["claims"]:
        exprs = ([("paper", c["paper"], c["line"])] if c["paper"] else []) + [
            (f"checks[{j}]", q, chk["line"]) for j, chk in enumerate(c["checks"])
            for q in (chk["measure"], split_expect(chk["expect"])[1].replace("{paper}", "0"))]
        for where, q, line in exprs:
            try:
                parse(q)
            except QueryError as e:
                raise ClaimsError(f"{path}:{line}: claim {c['id']}: field '{where}': {e}") from None


def _check(chk: dict[str, Any], claim: dict[str, Any], ctx: Context) -> CheckResult:
    op, rhs_text = split_expect(chk["expect"])
    rhs_text = rhs_text.replace("{paper}", f"({claim['paper']})")
    under = chk.get("under", "")
    try:
        lhs, rhs = evaluate(chk["measure"], ctx), evaluate(rhs_text, ctx)
    except Unmeasured as e:
        status = UNMEASURABLE if e.what.startswith("not runnable here") else UNMEASURED
        return CheckResult(under, status, op, reason=str(e))
    tol = float(chk["tol"])
    n = max(len(lhs.variants), len(rhs.variants))
    pick = lambda ev, i: ev.variants[i] if i < len(ev.variants) else ev.value  # noqa: E731
    conds = [compare(op, pick(lhs, i), pick(rhs, i), tol) for i in range(n)] if n >= 2 else []
    central = compare(op, lhs.value, rhs.value, tol)
    if conds and (any(conds) != all(conds) or any(conds) != central):
        status, reason = INCONCLUSIVE, "inside the measured spread"
    else:
        status, reason = (HOLDS if central else FAILS), ""
    loaded = [note for v in lhs.lookups + rhs.lookups for note in v.notes if "timed under load" in note]
    if loaded:
        status, reason = INCONCLUSIVE, "; ".join(loaded)
    return CheckResult(under, status, op, lhs, rhs, reason, tol)


def _verdict(claim: dict[str, Any], checks: list[CheckResult]) -> str:
    """Checks with ``under`` are alternative conditions (the claim may hold only under some, and holds
    outright only where every one was measured); checks without are parts of one statement (one failing
    part fails the claim)."""
    if claim["not_testable"]:
        return UNMEASURABLE
    measured = [c for c in checks if c.status in (HOLDS, FAILS, INCONCLUSIVE)]
    states = {c.status for c in measured}
    unmeasured = UNMEASURABLE if any(c.status == UNMEASURABLE for c in checks) else UNMEASURED
    if any(c.under for c in checks):  # alternative conditions: where does it hold?
        if not measured:
            return unmeasured
        if states == {HOLDS} and len(measured) == len(checks):
            v = HOLDS
        elif states == {FAILS}:
            v = FAILS
        elif HOLDS in states:
            v = "holds only under " + "; ".join(c.under for c in measured if c.status == HOLDS)
        else:
            v = INCONCLUSIVE
    else:  # parts of one statement: all must hold
        if FAILS in states:
            v = FAILS
        elif len(measured) < len(checks):
            return unmeasured
        else:
            v = INCONCLUSIVE if INCONCLUSIVE in states else HOLDS
    if claim["kind"] == "inconsistency" and v in (HOLDS, FAILS):
        return "paper consistent" if v == HOLDS else "paper inconsistent"
    return v


def evaluate_claims(data: dict[str, Any], ctx: Context) -> list[ClaimResult]:
    """Every claim of ``data`` (``load_claims``) evaluated on ``ctx``, in file order."""
    out = []
    for c in data["claims"]:
        try:
            paper_value = evaluate(c["paper"], ctx).value if c["paper"] else None
            checks = [_check(chk, c, ctx) for chk in c["checks"]]
        except QueryError as e:  # e.g. paper() of a row the transcription does not have
            raise QueryError(f"line {c['line']}: claim {c['id']}: {e}") from None
        out.append(ClaimResult(c, _verdict(c, checks), paper_value, checks))
    return out


# ----------------------------------------------------------------------------------------------
# rendering


def _spread_text(ev: Evaluation, fmt: str) -> str:
    sp = ev.spread
    if sp is None:
        return ""
    kinds = ", ".join(ev.kinds)
    what = f"{len(ev.variants)} seeds" if "seed" in kinds else f"{len(ev.variants)} timing rounds"
    return f" [{fmt_value(sp[0], fmt)} .. {fmt_value(sp[1], fmt)} over {what}" + (
        f"; {kinds}" if "borrowed" in kinds else "") + "]"


def _check_line(c: CheckResult, fmt: str) -> str:
    head = f"{c.under}: " if c.under else ""
    if c.lhs is None:
        return f"{head}{c.status} ({c.reason})"
    operands = ", ".join(f"{v.label} {fmt_value(v.value, v.fmt)}" + (f" (skip {100 * v.skip:.1f} %)" if v.skip else "")
                         for v in c.lhs.lookups + c.rhs.lookups
                         if not v.label.startswith(("paper ", "ref ")) or len(c.lhs.lookups) > 1)
    tol = f" within {fmt_value(c.tol, fmt).lstrip('+')}" if c.tol else ""
    line = (f"{head}{fmt_value(c.lhs.value, fmt)}{_spread_text(c.lhs, fmt)} {c.op} {fmt_value(c.rhs.value, fmt)}{tol}"
            f" -> {c.status}" + (f" ({c.reason})" if c.reason else ""))
    return line + (f"; from {operands}" if operands else "")


def _noise_note(r: ClaimResult) -> str:
    measured = [c for c in r.checks if c.lhs is not None]
    looks = [v for c in measured for v in c.lhs.lookups + c.rhs.lookups if not v.label.startswith(("paper ", "ref "))]
    if not looks:
        return ""
    notes = sorted({n for v in looks for n in v.notes})
    seeds = [v for v in looks if not v.label.startswith("fps_ratio")]
    timed = [v for v in looks if v.label.startswith("fps_ratio")]
    if seeds and not any(v.variants for v in seeds):
        notes.append("seed spread not measured (one training run per method)")
    if timed and not any(v.variants for v in timed):
        notes.append("timing spread not measured (no per-round ratios in the speed record)")
    return "; ".join(notes)


def _records(r: ClaimResult) -> list[str]:
    seen: list[str] = []
    for c in r.checks:
        for v in (c.lhs.lookups + c.rhs.lookups) if c.lhs else []:
            for e, rid in v.sources:
                s = f"`{e}` ({rid[:8]})"
                if s not in seen:
                    seen.append(s)
    return seen


def _settings(r: ClaimResult) -> list[str]:
    out: list[str] = []
    for c in r.checks:
        for v in (c.lhs.lookups + c.rhs.lookups) if c.lhs else []:
            if v.setting and v.setting not in out:
                out.append(v.setting)
    return out


def _ours(r: ClaimResult) -> str:
    first = next(((c, spec) for c, spec in zip(r.checks, r.claim["checks"]) if c.lhs is not None), None)
    if first is None:
        return "–"
    c, spec = first
    return fmt_value(c.lhs.value, spec["fmt"]) + (f" ({c.under})" if c.under and len(r.checks) > 1 else "")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(results: list[ClaimResult], data: dict[str, Any], source: str = "results/claims.yaml") -> str:
    """``results/claims.md``: verdict counts, a summary table, then one section per claim."""
    counts: dict[str, int] = {}
    for r in results:
        key = "holds only under ..." if r.verdict.startswith("holds only under") else r.verdict
        counts[key] = counts.get(key, 0) + 1
    lines = [
        "# The PASS paper's claims, tested on passbench's records",
        "",
        f"Generated by `passbench claims` (= `invoke claims`) from `{source}` (the claims, quoted from",
        "`../shared/papers/pass-aaai23.md` with their section, table or figure) and the records under",
        "`results/records/`. Do not edit: CI checks that this file equals its regeneration. Verdicts",
        "(`passbench/report/claims.py`): *holds* / *does not hold* for the measurement and every seed or",
        "timing round measured; *inconclusive* when the comparison is inside the measured spread (or the",
        "timing ran under load); *holds only under* the conditions named; *not measured yet* (no record);",
        "*not measurable here* (with the reason). Our settings differ from the paper's (a light proxy",
        "model, the sample videos, synthetic pose data, a CPU): each claim says how.",
        "",
        "Verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) + f" ({len(results)} claims).",
        "",
        "| claim | source | paper | ours | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        c = r.claim
        lines.append(f"| [{c['id']}](#{c['id']}) | {_cell(c['source'])} | {fmt_value(r.paper_value, c['fmt'])} | "
                     f"{_cell(_ours(r))} | {_cell(r.verdict)} |")
    for key, title in data["groups"]:
        mine = [r for r in results if r.claim["group"] == key]
        if not mine:
            continue
        lines += ["", f"## {title}"]
        for r in mine:
            c = r.claim
            lines += ["", f"### {c['id']}", "", f"**{c['claim']}** ({c['source']}; {c['kind']})", ""]
            lines += [f"> {' '.join(q.split())}" + ("" if i == len(c["quote"]) - 1 else "\n>")
                      for i, q in enumerate(c["quote"])]
            lines.append("")
            if r.paper_value is not None or c["condition"]:
                lines.append(f"* paper: {fmt_value(r.paper_value, c['fmt']) if r.paper_value is not None else '(see the quote)'}"
                             + (f", {c['condition']}" if c["condition"] else ""))
            if c["not_testable"]:
                lines.append(f"* not testable here: {c['not_testable']}")
            for chk, spec in zip(r.checks, c["checks"]):
                lines.append(f"* check: {_check_line(chk, spec['fmt'])}")
            recs = _records(r)
            if recs:
                lines.append(f"* records: {', '.join(recs)}")
            sets = _settings(r)
            if sets:
                lines.append(f"* setting: {'; '.join(sets)}")
            if c["differs"]:
                lines.append("* differs from the paper: " + "; ".join(data["settings"][d] for d in c["differs"]))
            noise = _noise_note(r)
            if noise:
                lines.append(f"* noise: {noise}")
            lines.append(f"* verdict: **{r.verdict}**" + (f". {c['note']}" if c["note"] else ""))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# files and command line


def build(results: str | Path | None = None, claims: str | Path = CLAIMS) -> str:
    """``claims.md``'s text from ``claims`` and the records under ``results``."""
    claims = Path(claims)
    data = load_claims(claims)
    check_queries(data, claims)
    rdir = records_dir(results)
    records = read_records(rdir) if rdir.is_dir() else []
    ctx = Context(records, data["references"], data["noise"])
    src = "results/claims.yaml" if claims == CLAIMS else str(claims)
    try:
        out = evaluate_claims(data, ctx)
    except QueryError as e:
        raise ClaimsError(f"{claims}: {e}") from None
    return render(out, data, source=src)


def claims_on(experiments: list[str], records: list[dict[str, Any]], base: str = "../results/claims.md",
              claims: str | Path = CLAIMS) -> str:
    """Markdown: the claims whose checks read one of ``experiments``, each linked to its section of
    ``claims.md`` (``base``), with its verdict on ``records`` (the leaderboard notebook shows it under the
    board and Table 3); "" when none."""
    data = load_claims(claims)
    wanted = set(experiments)
    data = {**data, "claims": [c for c in data["claims"] if wanted & set(experiments_of(c))]}
    if not data["claims"]:
        return ""
    rows = evaluate_claims(data, Context(records, data["references"], data["noise"]))
    lines = ["| claim | source | statement | ours | verdict |", "|---|---|---|---|---|"]
    lines += [f"| [{r.claim['id']}]({base}#{r.claim['id']}) | {_cell(r.claim['source'])} | {_cell(r.claim['claim'])} | "
              f"{_cell(_ours(r))} | {_cell(r.verdict)} |" for r in rows]
    return "\n".join(lines) + "\n"


def register_cli(sub: Any) -> None:
    """``passbench claims [--check] [--claims FILE] [--out FILE]``."""
    p = sub.add_parser("claims", help="evaluate the paper's claims (results/claims.yaml) on the records; write "
                                      "results/claims.md")
    p.add_argument("--claims", type=Path, default=CLAIMS, help="claims file (default results/claims.yaml)")
    p.add_argument("--out", type=Path, default=None, help="output (default <results>/claims.md)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file differs from its "
                                                        "regeneration (a stale ledger)")
    p.set_defaults(fn=_cmd_claims)


def _cmd_claims(args: Any) -> int:
    text = build(args.results_dir, args.claims)
    out = args.out or results_dir(args.results_dir) / "claims.md"
    if args.check:
        old = out.read_text() if out.is_file() else ""
        if old == text:
            print(f"{out}: up to date")
            return 0
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(out), "regenerated"))
        print(f"{out} is stale: run `passbench claims`", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")  # never a half-written ledger
    tmp.write_text(text)
    tmp.replace(out)
    print(next(ln for ln in text.splitlines() if ln.startswith("Verdicts: ")))
    print(f"wrote {out}")
    return 0
