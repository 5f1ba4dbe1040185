"""``results/claims.yaml``: the paper's claims, hand-written and reviewed against the paper's text.

Read and checked here (structure only; ``passbench.report.claims`` evaluates the queries). Layout::

    groups:       [{key, title}, ...]         # sections of results/claims.md, in order
    settings:     {key: text}                 # how a measurement's setting differs from the paper's
    references:   {name: {value, source, quote}}   # numbers from outside the paper (ref("name"))
    noise:        {experiment: [glob, ...]}   # experiments that borrow <experiment>'s seed spread
    claims:
      - id: t3-f-mota                         # lower-case words joined by "-": claims.md's anchor
        group: table3
        kind: claim | inconsistency | finding # a paper claim, a contradiction within the paper, a
                                              # passbench finding the README states
        source: "Table 3"                     # section / table / figure
        quote: "..."                          # verbatim from the paper (a list for several passages)
        claim: "..."                          # the statement, in words
        condition: "..."                      # what the paper's number is measured on
        paper: 'paper("table3", "pass_f", "mota")'   # the paper's number (query; optional)
        fmt: pct | pp | x | mm | dmm | gmacs | int | dint | num   # how its numbers are shown (pp, dmm,
                                              # dint: signed differences in points, mm, counts)
        checks:                               # how passbench tests it, or
          - {under: "...", measure: <query>, expect: ">= 0", tol: 0.0, fmt: pp}   # fmt: the claim's by default
        not_testable: "..."                   # why it cannot be tested here
        differs: [proxy_mot, cpu]             # keys of `settings`
        note: "..."                           # why, in words (no measured numbers: they go stale)

``expect`` is a comparison (``>=``, ``<=``, ``>``, ``<``, ``==`` within ``tol``) and a query;
``{paper}`` in it stands for the claim's ``paper`` query. Errors name the file, the line and the field
(:class:`ClaimsError`). Imports no torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from passbench.errors import UserError
from passbench.paths import RESULTS

CLAIMS = RESULTS / "claims.yaml"
KINDS = ("claim", "inconsistency", "finding")
FORMATS = ("pct", "pp", "x", "mm", "dmm", "gmacs", "int", "dint", "num")  # d...: a signed difference
OPS = (">=", "<=", "==", ">", "<")
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_EXPERIMENT = re.compile(r"""["']([a-z0-9_]+/[^"']+)["']""")
_FIELDS = {"id", "group", "kind", "source", "quote", "claim", "condition", "paper", "fmt", "checks", "not_testable",
           "differs", "note"}
_CHECK_FIELDS = {"under", "measure", "expect", "tol", "fmt"}


class ClaimsError(UserError, ValueError):
    """``claims.yaml`` is malformed; the message names the file, the line and the field."""


class _Lines(yaml.SafeLoader):
    """A SafeLoader that stores each mapping's line as ``__line__``."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[str, Any]:
    out = loader.construct_mapping(node, deep=True)
    out["__line__"] = node.start_mark.line + 1
    return out


_Lines.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if k != "__line__"}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def split_expect(text: str) -> tuple[str, str]:
    """``">= 0.5"`` -> ``(">=", "0.5")``."""
    for op in OPS:
        if str(text).strip().startswith(op):
            return op, str(text).strip()[len(op):].strip()
    raise ValueError(f"expect {text!r} must start with one of {', '.join(OPS)}")


def load_claims(path: str | Path = CLAIMS) -> dict[str, Any]:
    """Read and check ``claims.yaml``.

    Returns:
        ``{groups, settings, references: {name: value}, reference_sources, noise, claims}`` with every
        claim a plain dict (defaults filled: ``kind`` claim, ``fmt`` num, ``checks`` [], ``differs`` [],
        each check's ``tol`` 0, ``quote`` a list) plus ``line``.

    Raises:
        ClaimsError: ``<file>:<line>: claim <id>: field '<name>': what is wrong``.
    """
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_Lines) or {}
    except OSError as e:
        raise ClaimsError(f"{path}: cannot read: {e}") from None
    except yaml.YAMLError as e:
        raise ClaimsError(f"{path}: invalid YAML: {e}") from None

    def fail(line: Any, what: str) -> ClaimsError:
        return ClaimsError(f"{path}:{line}: {what}")

    extra = set(data) - {"groups", "settings", "references", "noise", "claims", "__line__"}
    if extra:
        raise fail(1, f"unknown top-level key(s) {sorted(extra)} (groups, settings, references, noise, claims)")
    groups = [(g.get("key"), g.get("title")) for g in data.get("groups") or []]
    if not groups or not all(isinstance(k, str) and isinstance(t, str) for k, t in groups):
        raise fail(data.get("__line__", 1), "field 'groups': a list of {key, title}")
    settings = _plain(data.get("settings") or {})
    refs, ref_sources = {}, {}
    for name, r in (data.get("references") or {}).items():
        if name == "__line__":
            continue
        if not isinstance(r, dict) or not isinstance(r.get("value"), (int, float)) or not r.get("quote") or not r.get("source"):
            raise fail(getattr(r, "get", lambda *_: "?")("__line__", "?"), f"references.{name}: needs value, source, quote")
        refs[name], ref_sources[name] = float(r["value"]), _plain(r)
    noise = {k: v for k, v in _plain(data.get("noise") or {}).items()}
    if not all(isinstance(v, list) and all(isinstance(g, str) for g in v) for v in noise.values()):
        raise fail(1, "field 'noise': {experiment: [glob, ...]}")
    claims, seen = [], set()
    for i, c in enumerate(data.get("claims") or []):
        line = c.get("__line__", "?") if isinstance(c, dict) else "?"
        if not isinstance(c, dict):
            raise fail(line, f"claims[{i}]: not a mapping")
        cid = c.get("id")
        who = f"claim {cid}" if cid else f"claims[{i}]"
        if not isinstance(cid, str) or not _ID.match(cid):
            raise fail(line, f"{who}: field 'id': lower-case words joined by '-', got {cid!r}")
        if cid in seen:
            raise fail(line, f"{who}: field 'id': duplicate")
        seen.add(cid)
        unknown = set(c) - _FIELDS - {"__line__"}
        if unknown:
            raise fail(line, f"{who}: unknown field(s) {sorted(unknown)} (known: {', '.join(sorted(_FIELDS))})")
        out = {"line": line, "kind": "claim", "fmt": "num", "checks": [], "differs": [], "note": "", "condition": "",
               "paper": None, "not_testable": None, **_plain(c)}
        for key in ("group", "source", "claim"):
            if not isinstance(out.get(key), str) or not out[key].strip():
                raise fail(line, f"{who}: field '{key}': missing or empty")
        if out["group"] not in dict(groups):
            raise fail(line, f"{who}: field 'group': {out['group']!r} is not one of {[k for k, _ in groups]}")
        if out["kind"] not in KINDS:
            raise fail(line, f"{who}: field 'kind': one of {KINDS}, got {out['kind']!r}")
        if out["fmt"] not in FORMATS:
            raise fail(line, f"{who}: field 'fmt': one of {FORMATS}, got {out['fmt']!r}")
        quote = out.get("quote")
        out["quote"] = [quote] if isinstance(quote, str) else quote
        if not out["quote"] or not all(isinstance(q, str) and q.strip() for q in out["quote"]):
            raise fail(line, f"{who}: field 'quote': the paper's words (a string or a list of strings)")
        if bool(out["checks"]) == bool(out["not_testable"]):
            raise fail(line, f"{who}: give either 'checks' (how passbench tests it) or 'not_testable' (why not)")
        bad = [d for d in out["differs"] if d not in settings]
        if bad:
            raise fail(line, f"{who}: field 'differs': {bad} not in settings ({', '.join(settings)})")
        for j, (chk, raw) in enumerate(zip(out["checks"], c.get("checks") or [])):
            cl = raw.get("__line__", line) if isinstance(raw, dict) else line
            if not isinstance(chk, dict) or set(chk) - _CHECK_FIELDS or not chk.get("measure") or not chk.get("expect"):
                raise fail(cl, f"{who}: field 'checks[{j}]': a mapping with measure, expect[, tol, under, fmt]")
            try:
                split_expect(chk["expect"])
            except ValueError as e:
                raise fail(cl, f"{who}: field 'checks[{j}].expect': {e}") from None
            if "{paper}" in chk["expect"] and not out["paper"]:
                raise fail(cl, f"{who}: field 'checks[{j}].expect' uses {{paper}} but the claim has no 'paper'")
            if chk.setdefault("fmt", out["fmt"]) not in FORMATS:
                raise fail(cl, f"{who}: field 'checks[{j}].fmt': one of {FORMATS}, got {chk['fmt']!r}")
            tol = chk.setdefault("tol", 0.0)
            if not isinstance(tol, (int, float)) or isinstance(tol, bool) or tol < 0:
                raise fail(cl, f"{who}: field 'checks[{j}].tol': a number >= 0, got {tol!r}")
            chk["line"] = cl
        claims.append(out)
    if not claims:
        raise fail(1, "no claims")
    return {"groups": groups, "settings": settings, "references": refs, "reference_sources": ref_sources,
            "noise": noise, "claims": claims}


def experiments_of(claim: dict[str, Any]) -> list[str]:
    """Experiment ids a claim's checks read (``"table3/pass_f"``-like string arguments), in order."""
    out: list[str] = []
    for chk in claim["checks"]:
        for m in _EXPERIMENT.finditer(f"{chk['measure']} {chk['expect']}"):
            if m.group(1) not in out:
                out.append(m.group(1))
    return out


def claims_by_experiment(path: str | Path = CLAIMS) -> dict[str, list[str]]:
    """``{experiment: [claim id, ...]}`` over every claim whose checks read that experiment ({} without a file)."""
    if not Path(path).is_file():
        return {}
    out: dict[str, list[str]] = {}
    for c in load_claims(path)["claims"]:
        for e in experiments_of(c):
            out.setdefault(e, []).append(c["id"])
    return out


def claim_links(experiments: list[str], base: str = "../claims.md", path: str | Path = CLAIMS,
                title: str = "Paper claims on these rows") -> str:
    """Markdown: every experiment of ``experiments`` that a claim reads, with links to those claims
    (``base#<id>``, the claim's section in ``claims.md``); "" when none. For the tables and the notebook."""
    index = claims_by_experiment(path)
    rows = [f"* `{e}`: " + ", ".join(f"[{i}]({base}#{i})" for i in index[e]) for e in dict.fromkeys(experiments)
            if e in index]
    if not rows:
        return ""
    return f"{title} (verdicts in [claims.md]({base})):\n\n" + "\n".join(rows) + "\n"
