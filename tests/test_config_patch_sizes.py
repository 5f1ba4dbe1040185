"""method.params.patch_size takes an integer or a {layer glob: patch} mapping (the every-conv plan); a bad
entry of the mapping is refused naming its glob."""

import pytest

from passbench.config import CONFIGS, ConfigError, load_config


def test_patch_size_mapping_is_accepted_and_each_entry_checked():
    cfg = load_config(CONFIGS / "table3" / "pass_p.yaml", ["method.params.patch_size={'neck.*': 4, '*': 8}"])
    assert cfg.method.params["patch_size"] == {"neck.*": 4, "*": 8}
    with pytest.raises(ConfigError, match=r"method\.params\.patch_size\.neck\.\*.*>= 1, got 0"):
        load_config(CONFIGS / "table3" / "pass_p.yaml", ["method.params.patch_size={'neck.*': 0, '*': 8}"])
    with pytest.raises(ConfigError, match="empty mapping"):
        load_config(CONFIGS / "table3" / "pass_p.yaml", ["method.params.patch_size={}"])
    with pytest.raises(ConfigError, match="patch_size"):
        load_config(CONFIGS / "table3" / "pass_p.yaml", ["method.params.patch_size=abc"])
