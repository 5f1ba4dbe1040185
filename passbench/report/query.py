"""The claims ledger's query language: arithmetic over measured records and the paper's numbers.

A query is an expression in Python syntax, parsed with :mod:`ast` and interpreted here (never
``eval``): numbers, ``+ - * /``, unary ``-``, and calls of the functions below with string, number or
nested arguments. Examples::

    mota("table3/pass_f") - mota("table3/dense_light")
    1 - gmacs("table1/pass_f") / gmacs("table1/mhp")
    paper("table3", "pass_f", "fps") / paper("table3", "fairmot_dla34", "fps")

Record lookups (the latest run of the experiment, ``passbench.records.latest_by_experiment``):

=========================================================  ============================================
``mota idf1 idp ids mpjpe (e)``                             ``metrics.<name>`` (``mpjpe``: ``mpjpe_mm``)
``skip skip_gated (e)``                                     patch-skip rate, all frames / gated frames
``gmacs gate_gmacs dense_gmacs (e)``                        executed / gate / dense GMACs per frame
``mac_reduction (e)``                                       Eq. 3's R_m with the gate charged
``gated_share (e)``                                         dense MACs of the gated convs / all dense MACs
``metric(e, "metrics.per_camera.fixed.mpjpe_mm")``          any numeric field, by dotted path
``seq_mota(e, "mot17_02")``                                 a sequence's MOTA (Table 4's columns)
``fps_ratio(e)``                                            FPS over the dense twin's, same process: the
                                                            newest speed record of ``e``, else ``e``'s run
``paper(table, row, column)``                               ``results/paper/*.csv`` (transcribed)
``ref(name)``                                               a number quoted in ``claims.yaml``'s ``references``
``min(...) max(...) abs(x)``
=========================================================  ============================================

Each lookup gives a :class:`Value`: the number, the records it came from, and its *variants*: the same
quantity under other gate-training seeds (run records of ``seeds/<e>_s<k>``, seed 0 being ``e``
itself, ``scripts/measure_noise.sh``), or for ``fps_ratio`` each alternating timing round's ratio
(``speed.speedup_rounds``). An experiment without seed twins may borrow the seed deviations of the
experiment whose gates it runs (``noise`` in ``claims.yaml``: ``value(e) + value_k(src) - value_0(src)``).
:func:`evaluate` computes the expression once on the values and once per variant index: the spread of
the claim's own quantity. Smoke runs (``passbench.report.tables.smoke_reason``) never count as a
measurement. Imports no torch.
"""

from __future__ import annotations

import ast
import fnmatch
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from passbench.records import latest_by_experiment, timing_applies
from passbench.report.paper import load_paper
from passbench.report.tables import paper_with_twins, smoke_reason


class QueryError(ValueError):
    """A query is malformed (syntax, unknown function, wrong arguments): the ledger's author's mistake."""


class Unmeasured(LookupError):
    """A query needs a measurement that does not exist (yet): ``what`` says which and why."""

    def __init__(self, experiment: str, what: str) -> None:
        super().__init__(f"{experiment}: {what}")
        self.experiment, self.what = experiment, what


@dataclass(frozen=True)
class Value:
    """One looked-up number.

    Attributes:
        value: the number (fractions for rates, mm, GMACs, ratios).
        label: how the ledger names it, e.g. ``mota(table3/pass_f)``.
        fmt: display style (``pct``, ``mm``, ``gmacs``, ``x``, ``int``, ``num``).
        variants: the same quantity per seed (index = seed) or per timing round; empty when unmeasured.
        kind: ``seed``, ``seed, borrowed from <e>``, ``round`` or ``""``.
        sources: ``(experiment, run_id)`` of every record read.
        notes: conditions worth saying (a timing taken under load, load not recorded, ...).
        setting: model, input and data of the run read; skip: its all-frames patch-skip rate.
    """

    value: float
    label: str
    fmt: str = "num"
    variants: tuple[float, ...] = ()
    kind: str = ""
    sources: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    setting: str = ""
    skip: float | None = None  # the run's all-frames patch-skip rate (what a matched-rate comparison matches)


@dataclass
class Evaluation:
    """An expression's value, its value per variant index, and the lookups it made."""

    value: float
    variants: list[float] = field(default_factory=list)
    lookups: list[Value] = field(default_factory=list)

    @property
    def spread(self) -> tuple[float, float] | None:
        """(min, max) over the variants, or None with fewer than two."""
        return (min(self.variants), max(self.variants)) if len(self.variants) >= 2 else None

    @property
    def kinds(self) -> list[str]:
        return sorted({v.kind for v in self.lookups if v.kind})


_RATE = ("mota", "idf1", "idp", "idr", "recall", "precision", "patch_skip_rate", "mac_reduction")
_SEED = re.compile(r"^seeds/(?P<base>.+)_s(?P<k>\d+)$")


def field_fmt(name: str) -> str:
    """Display style of a record or paper field by its name."""
    if name in _RATE or name.startswith(("mota_", "patch_skip_rate")):
        return "pct"
    if "mpjpe" in name:
        return "mm"
    if "gmacs" in name:
        return "gmacs"
    if name in ("ids", "num_switches"):
        return "int"
    if name.startswith("fps_ratio") or name == "speedup":
        return "x"
    return "num"


def _dig(node: Any, path: str) -> Any:
    for p in path.split("."):
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


class Context:
    """What queries read: the records, the paper's transcribed numbers, quoted references, noise sources.

    Args:
        records: run records, skip markers and speed records (``passbench.records.read_records``).
        references: ``{name: number}`` quoted in ``claims.yaml``.
        noise: ``{source experiment: [glob, ...]}``: experiments matching a glob borrow the source's
            seed deviations.
        paper_dir: override of ``results/paper`` (tests).
    """

    def __init__(self, records: list[dict[str, Any]], references: dict[str, float] | None = None,
                 noise: dict[str, list[str]] | None = None, paper_dir: str | Path | None = None) -> None:
        self.latest = latest_by_experiment(records)
        self.speed: dict[str, dict[str, Any]] = {}
        for r in records:
            if r["kind"] == "speed" and str(r["created_utc"]) >= str(self.speed.get(r["experiment"], {}).get("created_utc", "")):
                self.speed[r["experiment"]] = r
        self.seeds: dict[str, dict[int, dict[str, Any]]] = {}
        for e, r in self.latest.items():
            m = _SEED.match(e)
            if m and r["kind"] == "run" and not smoke_reason(r):
                self.seeds.setdefault(m["base"], {})[int(m["k"])] = r
        self.references = dict(references or {})
        self.noise = {k: list(v) for k, v in (noise or {}).items()}
        self.paper_dir = paper_dir
        self._paper: dict[str, Any] = {}

    # -- records ----------------------------------------------------------------------------------

    def run(self, e: str) -> dict[str, Any]:
        """The latest run record of ``e`` (raises :class:`Unmeasured` saying why there is none)."""
        r = self.latest.get(e)
        if r is None:
            raise Unmeasured(e, "no record")
        if r["kind"] != "run":
            raise Unmeasured(e, f"not runnable here: {r['reason']}")
        smoke = smoke_reason(r)
        if smoke:
            raise Unmeasured(e, f"its run is {smoke}")
        return r

    def field(self, e: str, path: str, label: str, fmt: str | None = None,
              derive: Callable[[dict[str, Any]], Any] | None = None) -> Value:
        """``path`` of ``e``'s run (or ``derive(record)``), with its seed variants."""
        get = derive or (lambda rec: _dig(rec, path))
        r = self.run(e)
        v = get(r)
        if v is None or isinstance(v, (dict, list, str, bool)):
            raise Unmeasured(e, f"no number at {path}")
        fmt = fmt or field_fmt(path.rsplit(".", 1)[-1])
        variants, kind, sources = self._seed_variants(e, float(v), get)
        return Value(float(v), label, fmt, variants, kind, ((e, r["run_id"]), *sources), setting=setting_of(r),
                     skip=_dig(r, "cost.patch_skip_rate"))

    def _seed_variants(self, e: str, v0: float, get: Callable[[dict[str, Any]], Any]) -> tuple[tuple[float, ...], str, tuple]:
        own = self._seed_values(e, v0, get)
        if own:
            return own[0], "seed", own[1]
        for src, globs in self.noise.items():
            if src != e and any(fnmatch.fnmatch(e, g) for g in globs):
                try:
                    s0 = get(self.run(src))
                except Unmeasured:
                    continue
                theirs = self._seed_values(src, s0, get) if isinstance(s0, (int, float)) else None
                if theirs:
                    return tuple(v0 + s - float(s0) for s in theirs[0]), f"seed, borrowed from {src}", theirs[1]
        return (), "", ()

    def _seed_values(self, e: str, v0: float, get: Callable[[dict[str, Any]], Any]) -> tuple[tuple[float, ...], tuple] | None:
        twins = self.seeds.get(e) or {}
        vals, sources = {0: v0}, []
        for k, r in sorted(twins.items()):
            v = get(r)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                vals[k] = float(v)
                sources.append((r["experiment"], r["run_id"]))
        if len(vals) < 2:
            return None
        return tuple(vals[k] for k in sorted(vals)), tuple(sources)

    def fps_ratio(self, e: str) -> Value:
        """FPS over the dense twin's: the newest speed record of ``e``, else the run's own timing; per-round
        ratios as variants, and notes on the machine load."""
        sp_rec = self.speed.get(e)
        latest = self.latest.get(e)
        if sp_rec is not None and latest is not None and latest["kind"] == "run" and not timing_applies(sp_rec, latest):
            raise Unmeasured(e, "its speed record timed other weights or another operating point; re-time it")
        rec = sp_rec
        if rec is None:
            rec = self.run(e)
            if not (rec["speed"].get("fps") and rec["speed"].get("fps_dense")):
                raise Unmeasured(e, "not timed (no speed record, the run untimed)")
        sp = rec["speed"]
        ratio = sp["fps"] / sp["fps_dense"]
        notes = []
        if "loaded" not in sp:
            notes.append(f"{e}: machine load not recorded with this timing")
        elif sp["loaded"] and sp.get("others_cpu_cores") is not None:
            notes.append(f"{e}: timed under load: other processes kept {sp['others_cpu_cores']:.1f} of {sp['cpu_cores']} "
                         f"cores busy beside {sp.get('threads')} timing thread(s)")
        elif sp["loaded"]:
            notes.append(f"{e}: timed under load {max(v for v in (sp['load_1m_before'], sp['load_1m_after']) if v is not None):.1f} "
                         f"> {sp['cpu_cores']} cores")
        rounds = tuple(float(x) for x in sp.get("speedup_rounds") or ())
        setting = f"{sp.get('device')}, {sp.get('threads')} thread(s), {sp.get('precision')}"
        return Value(ratio, f"fps_ratio({e})", "x", rounds if len(rounds) >= 2 else (), "round" if len(rounds) >= 2 else "",
                     ((e, rec["run_id"]),), tuple(notes), setting=setting)

    # -- the paper and references ------------------------------------------------------------------

    def paper(self, table: str, row: str, column: str) -> Value:
        if table not in self._paper:
            try:
                self._paper[table] = paper_with_twins(table, load_paper(table, self.paper_dir))
            except KeyError as e:
                raise QueryError(str(e)) from None
        df = self._paper[table]
        if row not in df.index or column not in df.columns:
            raise QueryError(f"paper({table!r}, {row!r}, {column!r}): no such row / column in results/paper "
                             f"(rows {', '.join(df.index)}; columns {', '.join(map(str, df.columns))})")
        v = df.loc[row, column]
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise QueryError(f"paper({table!r}, {row!r}, {column!r}) is not a number: {v!r}") from None
        if v != v:  # NaN: an empty cell
            raise QueryError(f"paper({table!r}, {row!r}, {column!r}) is empty")
        return Value(v, f"paper {table} {row} {column}", field_fmt(column))

    def ref(self, name: str) -> Value:
        if name not in self.references:
            raise QueryError(f"ref({name!r}): not in claims.yaml references ({', '.join(self.references) or 'none'})")
        return Value(float(self.references[name]), f"ref {name}")


def setting_of(rec: dict[str, Any]) -> str:
    """``fairmot_mbv2 @ 384x224, MOT15 (PETS09-S2L1, ...), cpu``: model, input, data, device of a run."""
    cfg = rec.get("config") or {}
    wh = (cfg.get("model") or {}).get("input_wh")
    ds = rec.get("dataset") or {}
    data = str(ds.get("name"))
    if ds.get("synthetic"):
        data += " (SYNTHETIC)"
    elif ds.get("sequences"):
        data += " " + "+".join(ds["sequences"])
    return f"{rec['model']['name']}" + (f" @ {wh[0]}x{wh[1]}" if wh else "") + f", {data}"


# ----------------------------------------------------------------------------------------------
# the interpreter

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CMP = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_METRIC = {"mota": "metrics.mota", "idf1": "metrics.idf1", "idp": "metrics.idp", "ids": "metrics.ids",
           "mpjpe": "metrics.mpjpe_mm", "skip": "cost.patch_skip_rate", "skip_gated": "cost.patch_skip_rate_gated_frames",
           "gmacs": "cost.gmacs_executed", "gate_gmacs": "cost.gate_gmacs", "dense_gmacs": "cost.gmacs_dense",
           "mac_reduction": "cost.mac_reduction"}
FUNCTIONS = (*_METRIC, "gated_share", "metric", "seq_mota", "fps_ratio", "paper", "ref", "min", "max", "abs")


def parse(expr: str) -> ast.Expression:
    """Parse and check ``expr`` (raises :class:`QueryError` naming what is not allowed)."""
    try:
        tree = ast.parse(str(expr), mode="eval")
    except SyntaxError as e:
        raise QueryError(f"{expr!r}: not an expression: {e.msg}") from None
    funcs = {id(c.func) for c in ast.walk(tree) if isinstance(c, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in funcs:
            raise QueryError(f"{expr!r}: bare name {node.id!r} (strings need quotes)")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = getattr(node.func, "id", ast.dump(node.func))
                raise QueryError(f"{expr!r}: unknown function {name!r} (known: {', '.join(FUNCTIONS)})")
            if node.keywords:
                raise QueryError(f"{expr!r}: keyword arguments are not supported")
        elif isinstance(node, ast.BinOp) and type(node.op) not in _BIN:
            raise QueryError(f"{expr!r}: operator {type(node.op).__name__} not supported (+ - * /)")
        elif isinstance(node, ast.UnaryOp) and not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise QueryError(f"{expr!r}: unary {type(node.op).__name__} not supported")
        elif isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str)):
            raise QueryError(f"{expr!r}: constant {node.value!r} not supported")
        elif not isinstance(node, (ast.Expression, ast.Call, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name,
                                   ast.Load, ast.operator, ast.unaryop)):
            raise QueryError(f"{expr!r}: {type(node).__name__} not supported")
    return tree


def _strings(args: list[Any], n: int, name: str) -> list[str]:
    if len(args) != n or not all(isinstance(a, str) for a in args):
        raise QueryError(f"{name}() takes {n} string argument(s), got {args!r}")
    return args


def _lookup(ctx: Context, name: str, args: list[Any]) -> Value:
    if name in _METRIC:
        (e,) = _strings(args, 1, name)
        return ctx.field(e, _METRIC[name], f"{name}({e})")
    if name == "gated_share":
        (e,) = _strings(args, 1, name)
        return ctx.field(e, "cost.gmacs_wrapped_dense", f"gated_share({e})", "pct",
                         derive=lambda r: (r["cost"].get("gmacs_wrapped_dense") or 0.0) / r["cost"]["gmacs_dense"]
                         if r["cost"].get("gmacs_wrapped_dense") is not None else None)
    if name == "metric":
        e, path = _strings(args, 2, name)
        return ctx.field(e, path, f"{e}: {path}")
    if name == "seq_mota":
        e, key = _strings(args, 2, name)

        def per_seq(r: dict[str, Any]) -> Any:
            for seq, vals in ((r.get("metrics") or {}).get("per_sequence") or {}).items():
                if re.sub(r"^(mot\d\d)-(\d\d).*$", r"\1_\2", seq.lower()) == key:
                    return vals.get("mota")
            return None
        return ctx.field(e, f"metrics.per_sequence[{key}].mota", f"seq_mota({e}, {key})", "pct", derive=per_seq)
    if name == "fps_ratio":
        (e,) = _strings(args, 1, name)
        return ctx.fps_ratio(e)
    if name == "paper":
        return ctx.paper(*_strings(args, 3, name))
    if name == "ref":
        return ctx.ref(*_strings(args, 1, name))
    raise QueryError(f"unknown function {name!r}")  # min / max / abs are handled by the interpreter


def evaluate(expr: str, ctx: Context) -> Evaluation:
    """Evaluate ``expr`` on ``ctx``: its value, its value per variant index (seed or timing round), and
    the lookups made.

    Raises:
        QueryError: the expression is malformed.
        Unmeasured: a lookup has no measurement (no record, a skip marker, a smoke run, a missing field).
    """
    tree = parse(expr)
    cache: dict[tuple, Value] = {}
    order: list[Value] = []

    def ev(node: ast.AST, pick: int | None) -> float:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                raise QueryError(f"{expr!r}: a string {node.value!r} where a number belongs")
            return float(node.value)
        if isinstance(node, ast.UnaryOp):
            x = ev(node.operand, pick)
            return -x if isinstance(node.op, ast.USub) else x
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left, pick), ev(node.right, pick)
            if isinstance(node.op, ast.Div) and b == 0:
                raise QueryError(f"{expr!r}: division by zero")
            return _BIN[type(node.op)](a, b)
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        fn = node.func.id
        if fn in ("min", "max", "abs"):
            xs = [ev(a, pick) for a in node.args]
            if not xs or (fn == "abs" and len(xs) != 1):
                raise QueryError(f"{expr!r}: {fn}() needs {'one argument' if fn == 'abs' else 'arguments'}")
            return {"min": min, "max": max}[fn](xs) if fn != "abs" else abs(xs[0])
        args = []
        for a in node.args:
            if not isinstance(a, ast.Constant):
                raise QueryError(f"{expr!r}: {fn}() takes literal arguments")
            args.append(a.value)
        key = (fn, *args)
        if key not in cache:
            cache[key] = _lookup(ctx, fn, args)
            order.append(cache[key])
        v = cache[key]
        if pick is not None and v.variants:
            return v.variants[pick] if pick < len(v.variants) else v.value
        return v.value

    central = ev(tree.body, None)
    n = max((len(v.variants) for v in order), default=0)
    return Evaluation(central, [ev(tree.body, i) for i in range(n)], order)


def compare(op: str, a: float, b: float, tol: float = 0.0) -> bool:
    """``a op b``; ``==`` within ``tol``, the inequalities with ``tol`` of slack."""
    if op == "==":
        return abs(a - b) <= tol
    if op not in _CMP:
        raise QueryError(f"unknown comparison {op!r} (>=, <=, >, <, ==)")
    slack = {">=": -tol, ">": -tol, "<=": tol, "<": tol}[op]
    return _CMP[op](a, b + slack)
