"""Config schema: _base_ inheritance, deep merge, typed overrides, errors naming key + file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from passbench.config import (
    CONFIGS,
    ConfigError,
    ExperimentCfg,
    config_id,
    find_configs,
    from_dict,
    load_config,
    parse_override,
    to_dict,
)

REPO_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml") if "_base_" not in p.parts)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    _write(tmp_path / "_base_" / "a.yaml", "task: mot\ndataset: {name: MOT15, sequences: [A, B], split: train}\n"
           "method: {name: dense, params: {patch_size: 1, execution: sparse}}\nspeed: {iters: 3}\n")
    _write(tmp_path / "_base_" / "b.yaml", "_base_: a.yaml\nmodel: {name: fairmot_mbv2, input_wh: [64, 32]}\nspeed: {warmup: 1}\n")
    _write(tmp_path / "_base_" / "c.yaml", "dataset: {sequences: [C]}\nmethod: {params: {patch_size: 2}}\n")
    return _write(tmp_path / "exp" / "row.yaml", "_base_: [../_base_/b.yaml, ../_base_/c.yaml]\nmethod: {name: pass_p}\n")


def test_inheritance_deep_merge_and_list_replace(tree: Path) -> None:
    cfg = load_config(tree)
    assert cfg.task == "mot"
    assert cfg.model.name == "fairmot_mbv2" and cfg.model.input_wh == (64, 32)
    assert cfg.dataset.name == "MOT15"
    assert cfg.dataset.sequences == ("C",)  # lists replace, they do not concatenate
    assert cfg.method.name == "pass_p"
    assert cfg.method.params == {"patch_size": 2, "execution": "sparse"}  # dicts merge key by key; later base wins
    assert (cfg.speed.iters, cfg.speed.warmup) == (3, 1)  # from two different levels of the chain
    assert cfg.speed.threads == ExperimentCfg().speed.threads  # untouched default


def test_overrides_are_typed(tree: Path) -> None:
    cfg = load_config(tree, ["speed.iters=7", "eval.iou_threshold=1", "dataset.frames=[1, 10]",
                             "model.weights=null", "method.params.patch_size=8", "speed.enabled=false"])
    assert cfg.speed.iters == 7
    assert cfg.eval.iou_threshold == 1.0 and isinstance(cfg.eval.iou_threshold, float)
    assert cfg.dataset.frames == (1, 10)
    assert cfg.model.weights is None
    assert cfg.method.params["patch_size"] == 8
    assert cfg.speed.enabled is False


@pytest.mark.parametrize(
    "override, needle",
    [
        ("speed.iters=fast", "'speed.iters': expected an integer"),
        ("speed.iters=2.5", "'speed.iters': expected an integer"),
        ("speed.enabled=1", "'speed.enabled': expected true/false"),
        ("model.input_wh=[1, 2, 3]", "'model.input_wh': expected a list of 2 items"),
        ("dataset.name=null", "'dataset.name': expected a string, got None"),
        ("dataset.frames=[1]", "'dataset.frames': expected a list of 2 items"),
        ("max_cpu_gmacs=lots", "'max_cpu_gmacs': expected a number"),
        ("method.params=3", "'method.params': expected a mapping"),
    ],
)
def test_override_type_errors_name_key_and_override(tree: Path, override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(tree, [override])
    assert needle in str(e.value)
    assert f"override {override!r}" in str(e.value)


def test_unknown_key_in_base_file_names_key_and_that_file(tmp_path: Path) -> None:
    base = _write(tmp_path / "base.yaml", "speed: {iterz: 3}\n")
    top = _write(tmp_path / "top.yaml", "_base_: base.yaml\ntask: mot\n")
    with pytest.raises(ConfigError) as e:
        load_config(top)
    msg = str(e.value)
    assert "unknown key 'speed.iterz'" in msg and str(base.resolve()) in msg


def test_unknown_override_key_and_section(tree: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'method.nmae'.*has: name, params"):
        load_config(tree, ["method.nmae=x"])
    with pytest.raises(ConfigError, match=r"override 'nosuch.key=1'.*unknown key 'nosuch'"):
        load_config(tree, ["nosuch.key=1"])


def test_type_error_in_file_names_the_file(tmp_path: Path) -> None:
    p = _write(tmp_path / "bad.yaml", "speed: {threads: many}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p.resolve()) in str(e.value) and "'speed.threads'" in str(e.value)


def test_bad_yaml_missing_base_and_cycle(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(_write(tmp_path / "x.yaml", "a: [1,\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(_write(tmp_path / "y.yaml", "_base_: nope.yaml\n"))
    _write(tmp_path / "c1.yaml", "_base_: c2.yaml\n")
    _write(tmp_path / "c2.yaml", "_base_: c1.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "c1.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path / "l.yaml", "- 1\n- 2\n"))


def test_parse_override_forms() -> None:
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a=x=y") == ("a", "x=y")
    assert parse_override("a=") == ("a", "")
    with pytest.raises(ConfigError):
        parse_override("novalue")
    with pytest.raises(ConfigError):
        parse_override("a..b=1")


def test_frozen(tree: Path) -> None:
    cfg = load_config(tree)
    with pytest.raises(Exception):
        cfg.task = "pose"  # type: ignore[misc]


@pytest.mark.parametrize("path", REPO_CONFIGS, ids=lambda p: config_id(p))
def test_repo_configs_resolve_and_round_trip(path: Path) -> None:
    # the leaderboard row templates leave model.name empty: `passbench leaderboard add` fills it
    cfg = load_config(path, ["model.name=fairmot_mbv2"] if path.parent.name == "leaderboard" else [])
    assert cfg.name == config_id(path)
    assert cfg.table, f"{path}: every experiment names its table"
    assert cfg.task in ("mot", "pose")
    d = to_dict(cfg)
    assert from_dict(json.loads(json.dumps(d))) == cfg  # the dict stored in records rebuilds the config
    if cfg.paper_row is not None:  # the paper row it is compared to exists in the transcription
        name = {"table1": "table1_pose_sota", "table2": "table2_pose_env", "table3": "table3_mot_sota",
                "table4": "table4_mot_env"}[cfg.table]
        rows = pd.read_csv(CONFIGS.parent / "results" / "paper" / f"{name}.csv")["row"].tolist()
        assert cfg.paper_row in rows


def test_table3_has_every_row_the_brief_names() -> None:
    ids = {config_id(p).split("/")[1] for p in find_configs(3)}
    assert ids >= {"dense_light", "skipconv", "pass_p", "pass_f", "fairmot_dla34", "hrnet_w32", "regnety_040",
                   "dla34", "fpn_resnet34", "hardnet85"}
    with pytest.raises(ConfigError):
        find_configs(99)
