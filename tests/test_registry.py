import pytest

from passbench.registry import Registry


def test_register_build_and_glob():
    r = Registry("things")

    @r.register("hrnet_w32")
    def a(x=1):
        return ("a", x)

    @r.register()
    def hrnet_w18():
        return "b"

    assert r.build("hrnet_w32", x=3) == ("a", 3)
    assert r.names("hrnet*") == ["hrnet_w18", "hrnet_w32"]
    assert "hrnet_w18" in r and len(r) == 2


def test_duplicate_and_unknown_names():
    r = Registry("things")
    r.register("dla34")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        r.register("dla34")(lambda: 2)
    with pytest.raises(KeyError, match="did you mean 'dla34'"):
        r.get("dla43")
