"""``passbench leaderboard add MODEL``: a backbone's four leaderboard rows in one command.

1. train the task model, PASS-P gates, PASS-F and Skip-Conv thresholds (``passbench.train``) on the sample
   training split with the recipe ``configs/leaderboard/_base_/train.yaml`` (``scripts/train_sample.sh``'s);
2. run dense, Skip-Conv, PASS-P and PASS-F on the sample eval split with ``passbench.runner.run``
   (templates ``configs/leaderboard/<method>.yaml``: Table 3's protocol) and append the records to
   ``results/records/leaderboard.jsonl``.

Time budget: ``budget_minutes`` covers training (evaluation comes on top). Each stage gets its ``share``
of what is left when it starts; its first ``1 + probe_steps`` steps run anyway and the last ``probe_steps``
of them are timed to set its step count to fill its share (the plan: ``OUT/plan.json``).

Resumable: every stage resumes from ``OUT/<stage>/last.pt`` with the stored plan and a stage whose
``final.pt`` exists is not trained again; a row whose record exists (same resolved config, same
weights sha256) is not measured again (``force=True`` re-measures). Retraining needs another ``out``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from passbench.config import CONFIGS, ExperimentCfg, load_config, normalized, to_dict
from passbench.errors import UserError
from passbench.paths import REPO_ROOT

METHODS = ("dense", "skipconv", "pass_p", "pass_f")
STAGES = ("task", "pass_p", "pass_f", "skipconv")  # training order
WEIGHTS_OF = {"dense": "task", "skipconv": "skipconv", "pass_p": "pass_p", "pass_f": "pass_f"}
INIT_OF = {"task": None, "pass_p": "task", "pass_f": "pass_p", "skipconv": "task"}
# Gated layers, as Table 3 (scripts/train_sample.sh): the stride-4 neck and the heads' 3x3 convs and the
# id head's 1x1 (not the 64 -> 1/2/4 outputs, whose gate would cost more MACs than the conv).
DEFAULT_LAYERS = ("neck.*", "hm.0", "wh.0", "reg.0", "id.0", "id.2")
CONFIG_DIR = CONFIGS / "leaderboard"
RECIPE = CONFIG_DIR / "_base_" / "train.yaml"
PLAN = "plan.json"


class LeaderboardError(UserError, ValueError):
    """The command cannot go on; the message says why and what to change."""


# ----------------------------------------------------------------------------------------------
# the training recipe


def load_recipe(path: Path = RECIPE) -> dict[str, Any]:
    """``configs/leaderboard/_base_/train.yaml`` checked: ``{probe_steps, common, stages: {stage: {share, ...}}}``.

    Raises:
        LeaderboardError: a missing / unknown section or stage, a bad share, or a key that is not a
            StageCfg field (names the file and the key).
    """
    import yaml  # noqa: PLC0415

    from passbench.train.common import make_cfg  # noqa: PLC0415

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise LeaderboardError(f"{path}: cannot read the training recipe: {e}") from None
    extra = set(data) - {"probe_steps", "common", "stages"}
    if extra or set(data.get("stages") or {}) != set(STAGES):
        raise LeaderboardError(f"{path}: expected keys probe_steps, common, stages with stages {', '.join(STAGES)}; "
                               f"got {sorted(data)} / stages {sorted(data.get('stages') or {})}")
    for stage, kv in data["stages"].items():
        share = (kv or {}).get("share")
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1:
            raise LeaderboardError(f"{path}: stages.{stage}.share must be a number in [0, 1], got {share!r}")
        try:  # every other key must be a StageCfg field of the right type
            make_cfg(stage, {**(data.get("common") or {}), **{k: v for k, v in kv.items() if k != "share"}})
        except ValueError as e:
            raise LeaderboardError(f"{path}: stages.{stage} / common: {e}") from None
    if not isinstance(data.get("probe_steps"), int) or data["probe_steps"] < 1:
        raise LeaderboardError(f"{path}: probe_steps must be a positive integer, got {data.get('probe_steps')!r}")
    return data


def stage_cfg(recipe: dict[str, Any], stage: str, model: str, out: Path, *, layers: Sequence[str],
              data_root: str | None, steps: int | None, overrides: dict[str, Any]) -> Any:
    """The StageCfg of ``stage``: stage defaults < recipe (common, stage) < gated layers, init, steps < overrides."""
    from passbench.train.__main__ import STAGE_DEFAULTS  # noqa: PLC0415
    from passbench.train.common import make_cfg  # noqa: PLC0415

    kv = {**recipe["common"], **{k: v for k, v in recipe["stages"][stage].items() if k != "share"}}
    kv["model"] = model
    if stage in ("pass_p", "skipconv"):  # pass_f takes its gates from the PASS-P init
        kv["skip_params"] = {**kv.get("skip_params", {}), "layers": list(layers)}
    if INIT_OF[stage]:
        kv["init"] = str(out / INIT_OF[stage] / "final.pt")
    if data_root is not None:
        kv["data_root"] = str(data_root)
    if steps is not None:
        kv["steps"] = int(steps)
    kv.update(overrides)
    try:
        return make_cfg(stage, kv, STAGE_DEFAULTS[stage])
    except ValueError as e:
        raise LeaderboardError(f"training {stage}: {e}") from None


def _pretrained_label(value: Any) -> str:
    """``none``, ``imagenet`` or the weights file's name, as the records say it."""
    if value in (None, False, "", "none", "None"):
        return "none"
    return "imagenet" if value in (True, "imagenet") else Path(str(value)).name


def _stage_fn(stage: str) -> Callable[..., dict[str, Any]]:
    if stage == "task":
        from passbench.train.task import train_task as fn  # noqa: PLC0415
    elif stage == "pass_p":
        from passbench.train.pass_p import train_pass_p as fn  # noqa: PLC0415
    elif stage == "pass_f":
        from passbench.train.pass_f import train_pass_f as fn  # noqa: PLC0415
    else:
        from passbench.train.skipconv import train_skipconv as fn  # noqa: PLC0415
    return fn


def check_layers(model: str, layers: Sequence[str]) -> None:
    """Raise LeaderboardError (before any training) if a glob of ``layers`` matches no Conv2d of ``model``."""
    import fnmatch  # noqa: PLC0415

    import torch  # noqa: PLC0415

    from passbench.models import build_model  # noqa: PLC0415

    with torch.device("meta"):  # names only: no weights, no arithmetic
        net = build_model(model, pretrained=False)
    convs = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    bad = [g for g in layers if not any(fnmatch.fnmatch(n, g) for n in convs)]
    if bad:
        raise LeaderboardError(f"--layers {', '.join(bad)}: no Conv2d of {model} matches (its convs look like "
                               f"{', '.join(convs[:3])}, ..., {', '.join(convs[-3:])})")


# ----------------------------------------------------------------------------------------------
# training within a budget


def _done_steps(stage_dir: Path) -> int:
    """Steps already in ``stage_dir/last.pt`` (0 without one)."""
    import torch  # noqa: PLC0415

    last = stage_dir / "last.pt"
    return int(torch.load(last, map_location="cpu", weights_only=False)["step"]) if last.exists() else 0


def _read_plan(out: Path, model: str) -> dict[str, Any]:
    p = out / PLAN
    if not p.exists():
        return {"model": model, "stages": {}}
    plan = json.loads(p.read_text())
    if plan.get("model") != model:
        raise LeaderboardError(f"{p}: this folder trains {plan.get('model')!r}, not {model!r}; use another --out")
    return plan


def _write_plan(out: Path, plan: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (PLAN + ".tmp")
    tmp.write_text(json.dumps(plan, indent=1))
    tmp.replace(out / PLAN)


def train_stage(stage: str, make: Callable[[int | None], Any], stage_dir: Path, *, budget_s: float | None,
                probe_steps: int, max_steps: int | None, plan: dict[str, Any], save_plan: Callable[[], None],
                log: Callable[[str], None], env: Any = None) -> Path:
    """Train one stage to its ``final.pt`` (or find it done), filling ``budget_s`` seconds.

    Args:
        make: ``steps -> StageCfg`` (None: the recipe's own steps).
        budget_s: seconds for this stage; None: no planning (the recipe's steps, e.g. Skip-Conv's
            calibration, which takes no gradient steps).
        max_steps: cap on the planned steps (tests and smoke runs).
        env: the ``passbench.train`` environment (device); None: the default.
        plan: the stored plan (``plan["stages"][stage]`` is set once and reused on resumption).
    """
    fn = _stage_fn(stage)
    if env is not None:
        import functools  # noqa: PLC0415

        fn = functools.partial(fn, env=env)
    final = stage_dir / "final.pt"
    if final.exists():
        log(f"{stage}: done earlier ({final})")
        return final
    entry = plan["stages"].get(stage)
    t0 = time.perf_counter()
    if entry is None:
        entry = {"budget_s": None if budget_s is None else round(budget_s, 1)}
        if budget_s is None:
            entry["steps"] = None
        elif max_steps is not None and max_steps <= probe_steps + 1:
            entry["steps"] = max_steps
        else:
            probe = make(10**6)  # the lr schedule is that of any run longer than the probe
            start = _done_steps(stage_dir)
            fn(probe, stage_dir, stop_at=start + 1)  # first step: decodes and caches frames, warms up
            t1 = time.perf_counter()
            fn(probe, stage_dir, stop_at=start + 1 + probe_steps)
            per = (time.perf_counter() - t1) / probe_steps
            left = budget_s - (time.perf_counter() - t0)
            steps = start + 1 + probe_steps + max(0, math.floor(left / per))
            entry.update(steps=min(steps, max_steps) if max_steps else steps, s_per_step=round(per, 3))
        plan["stages"][stage] = entry
        save_plan()
    steps = entry["steps"]
    if steps is not None:
        log(f"{stage}: {steps} steps" + (f" at {entry['s_per_step']:.2f} s/step" if "s_per_step" in entry else "")
            + (f" ({entry['budget_s'] / 60:.1f} min budget)" if entry.get("budget_s") is not None else "")
            + (f", resuming at step {_done_steps(stage_dir)}" if (stage_dir / "last.pt").exists() else ""))
    else:
        log(f"{stage}: {make(None).calib} calibration of the thresholds" if stage == "skipconv" else f"{stage}")
    fn(make(steps), stage_dir)
    if not final.exists():
        raise LeaderboardError(f"{stage}: training ended without {final}")
    return final


# ----------------------------------------------------------------------------------------------
# evaluation


def row_config(method: str, model: str, weights: Path, input_wh: Sequence[int], overrides: Sequence[str] = ()
               ) -> ExperimentCfg:
    """The leaderboard row of ``method``: ``configs/leaderboard/<method>.yaml`` + this backbone + overrides."""
    rel = weights.resolve()
    if rel.is_relative_to(REPO_ROOT.resolve()):  # records stay portable for runs inside the repository
        rel = rel.relative_to(REPO_ROOT.resolve())
    sets = [f"name={json.dumps(f'leaderboard/{model}/{method}')}", f"model.name={json.dumps(model)}",
            f"model.weights={json.dumps(str(rel))}", f"model.input_wh=[{int(input_wh[0])},{int(input_wh[1])}]"]
    return load_config(CONFIG_DIR / f"{method}.yaml", [*sets, *overrides])


def existing_record(cfg: ExperimentCfg, weights: Path, results: Any = None) -> dict[str, Any] | None:
    """The newest run record of this row with the same resolved config and weights, if any."""
    from passbench.records import file_sha256, read_records  # noqa: PLC0415 (the records' weights_sha256)
    from passbench.runner import records_file  # noqa: PLC0415

    f = records_file(cfg, results)
    if not f.exists():
        return None

    want, sha = to_dict(cfg), file_sha256(weights)
    same = [r for r in read_records(f, kind="run") if r["experiment"] == cfg.name and normalized(r["config"]) == want
            and r["model"]["weights_sha256"] == sha]
    return max(same, key=lambda r: r["created_utc"]) if same else None


# ----------------------------------------------------------------------------------------------
# the command


def out_dir(model: str, out: str | Path | None = None, per_model: bool = False) -> Path:
    """``model``'s training folder: ``out`` (``out/<model>`` with ``per_model``: several backbones in one
    call), else ``runs/leaderboard/<model>``; ``:`` and ``/`` in the name become ``_``."""
    name = model.replace(":", "_").replace("/", "_")
    if out is None:
        return REPO_ROOT / "runs" / "leaderboard" / name
    return Path(out) / name if per_model else Path(out)


def prepare(model: str, *, out: str | Path | None = None, layers: Sequence[str] | None = None,
            train_overrides: dict[str, Any] | None = None, eval_overrides: Sequence[str] = (),
            recipe_path: Path = RECIPE, pretrained: str | None = None) -> dict[str, Any]:
    """Check ``model`` before any training (known name, under the CPU cap, the gated layers exist, its
    pretrained weights loadable) and resolve what training needs.

    Returns:
        ``{recipe, layers, out, overrides, wh, gmacs, pre}`` (``pre``: the backbone init as records say it).

    Raises:
        LeaderboardError: what is wrong and what to change.
    """
    from passbench.models import measure_model, model_spec  # noqa: PLC0415

    try:
        model_spec(model)
    except KeyError as e:
        raise LeaderboardError(str(e.args[0]) if e.args else str(e)) from None
    recipe = load_recipe(recipe_path)
    layers = tuple(layers or DEFAULT_LAYERS)
    out = out_dir(model, out)
    overrides = dict(train_overrides or {})
    wh = tuple(overrides.get("input_wh", recipe["common"]["input_wh"]))
    # Refuse before training what the runner would refuse after it (a bad override for any row's config,
    # dense MACs over the CPU cap).
    probe_cfg = [row_config(m, model, out / "task" / "final.pt", wh, eval_overrides) for m in METHODS][0]
    gmacs = measure_model(model, wh, "meta")[1]
    if probe_cfg.max_cpu_gmacs is not None and probe_cfg.speed.device == "cpu" and gmacs > probe_cfg.max_cpu_gmacs:
        raise LeaderboardError(f"{model} costs {gmacs:.1f} GMACs/frame at {wh[0]}x{wh[1]}, over the CPU cap "
                               f"max_cpu_gmacs={probe_cfg.max_cpu_gmacs}: the rows would be skip markers")
    check_layers(model, layers)
    if pretrained is not None:
        overrides["pretrained"] = None if pretrained in ("none", "None") else pretrained
    pre = _pretrained_label(overrides.get("pretrained", recipe["common"].get("pretrained")))
    if pre != "none" and not (out / "task" / "final.pt").exists():  # fail now, not after the probe steps
        from passbench.models import build_model, pretrained as pt  # noqa: PLC0415
        try:
            build_model(model, pretrained=overrides.get("pretrained", recipe["common"].get("pretrained")))
        except (pt.PretrainedUnavailable, ValueError) as e:
            raise LeaderboardError(f"{model}: --pretrained {pre}: {e}") from None
    return {"recipe": recipe, "layers": layers, "out": out, "overrides": overrides, "wh": wh, "gmacs": gmacs,
            "pre": pre}


def train(model: str, *, budget_minutes: float = 30.0, out: str | Path | None = None, data_root: str | None = None,
          layers: Sequence[str] | None = None, max_steps: int | None = None,
          train_overrides: dict[str, Any] | None = None, eval_overrides: Sequence[str] = (),
          recipe_path: Path = RECIPE, log: Callable[[str], None] | None = None, pretrained: str | None = None,
          device: str | None = None) -> tuple[dict[str, Path], tuple[int, int]]:
    """``prepare``, then train (or find trained) every stage within the budget (arguments as :func:`add`).

    Returns:
        ``({stage: final.pt}, input_wh)``.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    p = prepare(model, out=out, layers=layers, train_overrides=train_overrides, eval_overrides=eval_overrides,
                recipe_path=recipe_path, pretrained=pretrained)
    recipe, layers, out, overrides, wh = p["recipe"], p["layers"], p["out"], p["overrides"], p["wh"]
    from passbench.train.loop import train_env  # noqa: PLC0415

    env = train_env(device)
    log(f"{model}: {p['gmacs']:.2f} GMACs/frame at {wh[0]}x{wh[1]}; training in {out} (budget {budget_minutes:g} min)")

    plan = _read_plan(out, model)
    plan.setdefault("budget_minutes", budget_minutes)
    if plan["budget_minutes"] != budget_minutes and plan["stages"]:
        log(f"note: {out / PLAN} was planned for {plan['budget_minutes']} min; its plan is kept (another --out re-plans)")
    shares = {s: float(recipe["stages"][s]["share"]) for s in STAGES}
    t_start = time.perf_counter()
    finals: dict[str, Path] = {}
    for i, stage in enumerate(STAGES):
        left_s = max(0.0, 60.0 * budget_minutes - (time.perf_counter() - t_start))
        rest = sum(shares[s] for s in STAGES[i:])
        budget_s = left_s * shares[stage] / rest if shares[stage] > 0 else None

        def make(steps: int | None, stage: str = stage) -> Any:
            return stage_cfg(recipe, stage, model, out, layers=layers, data_root=data_root, steps=steps,
                             overrides=overrides)

        finals[stage] = train_stage(stage, make, out / stage, budget_s=budget_s, env=env,
                                    probe_steps=recipe["probe_steps"], max_steps=max_steps, plan=plan,
                                    save_plan=lambda: _write_plan(out, plan), log=log)
    log(f"training: {(time.perf_counter() - t_start) / 60:.1f} min in this call")
    return finals, wh


def add(model: str, *, budget_minutes: float = 30.0, out: str | Path | None = None, data_root: str | None = None,
        layers: Sequence[str] | None = None, max_steps: int | None = None, train_overrides: dict[str, Any] | None = None,
        eval_overrides: Sequence[str] = (), results: Any = None, force: bool = False,
        recipe_path: Path = RECIPE, log: Callable[[str], None] | None = None,
        pretrained: str | None = None, device: str | None = None) -> list[dict[str, Any]]:
    """Train ``model`` and its gates within the budget, measure the four methods, append the records.

    Args:
        model: a model name (``timm:<arch>`` or a registered one).
        budget_minutes: training time (all stages; evaluation comes on top).
        out: training folder (default ``runs/leaderboard/<model with ':' as '_'>``).
        data_root: data root for training and evaluation (default: ``passbench.paths`` resolution).
        layers: globs of the gated convs (default :data:`DEFAULT_LAYERS`).
        max_steps: cap on every stage's planned steps (smoke runs).
        train_overrides: StageCfg fields for every stage (e.g. ``{"sequences": ["synthetic"]}`` in tests).
        eval_overrides: dotted config overrides for every row (e.g. ``speed.iters=6``).
        results: results folder (default ``$PASSBENCH_RESULTS`` or ``<repo>/results``).
        force: measure rows again even when a record with the same config and weights exists.
        pretrained: the task stage's backbone init, ``imagenet`` (``passbench.models.pretrained``) or ``none``
            (default: the recipe's, none); every row's record says which under ``model.pretrained``.
        device: where the stages train (default CUDA when available, else the CPU); the rows run where
            ``eval_overrides``' ``speed.device`` says (the CLI's ``--device`` sets both).

    Returns:
        The four records (run records or skip markers), in :data:`METHODS` order.
    """
    from passbench.records import append_record, summary_line  # noqa: PLC0415
    from passbench.runner import records_file, run  # noqa: PLC0415

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    finals, wh = train(model, budget_minutes=budget_minutes, out=out, data_root=data_root, layers=layers,
                       max_steps=max_steps, train_overrides=train_overrides, eval_overrides=eval_overrides,
                       recipe_path=recipe_path, log=log, pretrained=pretrained, device=device)
    pre = _pretrained_label(pretrained if pretrained is not None else dict(train_overrides or {}).get(
        "pretrained", load_recipe(recipe_path)["common"].get("pretrained")))

    records = []
    for i, method in enumerate(METHODS, 1):
        weights = finals[WEIGHTS_OF[method]]
        cfg = row_config(method, model, weights, wh, eval_overrides)
        rec = None if force else existing_record(cfg, weights, results)
        t0 = time.perf_counter()
        note = "recorded earlier"
        if rec is None:
            log(f"[{i}/{len(METHODS)}] measuring {cfg.name}")
            rec = run(cfg, data_root=data_root, results=results, write=False)  # the runner's own bar per row
            if rec["kind"] == "run":
                rec["model"]["pretrained"] = pre  # the task stage's backbone init (the recipe's --pretrained)
            append_record(records_file(cfg, results), rec)
            note = f"{time.perf_counter() - t0:.0f} s"
        records.append(rec)
        print(f"{summary_line(rec)}  [{note}]", flush=True)
    return records


# ----------------------------------------------------------------------------------------------
# command line (``passbench leaderboard ...``; passbench/cli.py registers it)


def register_cli(sub: Any) -> None:
    """Add ``leaderboard add`` / ``leaderboard show`` to the ``passbench`` subcommands."""
    lb = sub.add_parser("leaderboard", help="add a backbone to the leaderboard (train + measure), or show it")
    lsub = lb.add_subparsers(dest="lb_cmd", required=True)
    a = lsub.add_parser("add", help="train MODEL and its gates within a time budget, then measure dense, Skip-Conv, "
                                    "PASS-P and PASS-F on the sample eval split (resumable)")
    a.add_argument("model", nargs="+", help="timm:<arch> (any timm features_only body, e.g. timm:resnet18) or a "
                                            "registered name; several: one after the other, or in parallel on Ray")
    a.add_argument("overrides", nargs="*", help="dotted config overrides for every row, e.g. speed.iters=12")
    a.add_argument("--budget-minutes", type=float, default=30.0, help="training time, all stages (default 30)")
    a.add_argument("--data-root", default=None, help="data root (default: $PASSBENCH_DATA or the sample data)")
    a.add_argument("--out", default=None, help="training folder (default runs/leaderboard/<model>); with several "
                                                "models, the folder holding one per model")
    a.add_argument("--layers", default=None,
                   help=f"comma-separated globs of the gated convs (default {','.join(DEFAULT_LAYERS)})")
    a.add_argument("--max-steps", type=int, default=None, help="cap on every stage's steps (smoke runs)")
    a.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                   help="StageCfg field for every training stage, e.g. --train batch_size=4 (repeatable)")
    a.add_argument("--force", action="store_true", help="measure rows again even if their record exists")
    from passbench.sched.executor import add_executor_options  # noqa: PLC0415 (no Ray import)

    add_executor_options(a)
    a.add_argument("--pretrained", choices=("imagenet", "none"), default=None,
                   help="backbone init of the task stage: timm's / torchvision's ImageNet weights (their cache, or "
                        "their download when the network allows it) or random (default: the recipe's, none); "
                        "recorded in every row's model.pretrained")
    from passbench.device import add_device_options  # noqa: PLC0415

    add_device_options(a)  # --device trains and measures there; --precision: the rows' autocast
    a.set_defaults(fn=_cmd_add)
    s = lsub.add_parser("show", help="print the leaderboard (method x backbone) from the records")
    s.add_argument("--format", choices=("md", "csv"), default="md")
    s.set_defaults(fn=_cmd_show)


def _cmd_add(args: Any) -> int:
    import yaml  # noqa: PLC0415

    train = {}
    for text in args.train:
        if "=" not in text:
            print(f"error: --train {text!r} is not of the form key=value", file=sys.stderr)
            return 2
        k, v = text.split("=", 1)
        train[k.strip()] = yaml.safe_load(v) if v.strip() else ""
    layers = [g.strip() for g in args.layers.split(",") if g.strip()] if args.layers else None
    # MODEL [MODEL ...] [key=value ...]: argparse hands every positional to the first list
    from passbench.device import overrides as device_overrides  # noqa: PLC0415

    models = [m for m in args.model if "=" not in m]
    overrides = [m for m in args.model if "=" in m] + list(args.overrides)
    outs = [out_dir(m, args.out, per_model=len(models) > 1) for m in models]
    try:
        overrides += device_overrides(args.device, args.precision)
        kw = dict(budget_minutes=args.budget_minutes, data_root=args.data_root, layers=layers,
                  max_steps=args.max_steps, train_overrides=train, eval_overrides=overrides, results=args.results_dir,
                  force=args.force, pretrained=args.pretrained, device=args.device)
        if args.executor == "ray":
            from passbench.sched.board import add_on_ray  # noqa: PLC0415

            return add_on_ray(sys.modules[__name__], models, [o.resolve() for o in outs], address=args.ray_address,
                              **kw)
        for model, out in zip(models, outs):
            add(model, out=out, **kw)
    except LeaderboardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _cmd_show(args: Any) -> int:
    from passbench.records import read_records, records_dir  # noqa: PLC0415
    from passbench.report.leaderboard import board  # noqa: PLC0415

    rdir = records_dir(args.results_dir)
    df = board(read_records(rdir) if rdir.is_dir() else [])
    if args.format == "csv":
        print(df.to_csv(index=False), end="")
        return 0
    fmt = {"mota": "{:.1%}", "idf1": "{:.1%}", "patch_skip_rate": "{:.1%}", "gmacs_executed": "{:.3f}",
           "gate_gmacs": "{:.3f}", "gmacs_dense": "{:.3f}", "mac_reduction": "{:.1%}", "fps": "{:.1f}",
           "fps_ratio_to_dense": "{:.2f}x"}
    shown = df.drop(columns="created_utc").astype(object)
    for col, f in fmt.items():
        shown[col] = [("-" if v is None or v != v else f.format(v)) for v in df[col]]
    print(shown.to_markdown(index=False))
    return 0
