from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from ddkit.config import build, load_yaml, merge, parse_overrides
from ddkit.errors import DDKitError


@dataclass(frozen=True)
class Inner:
    rate: float = 0.1
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str
    steps: int = 3
    inner: Inner = field(default_factory=Inner)
    sizes: list[int] = field(default_factory=list)
    note: Optional[str] = None


def test_build_nested_and_coerces_int_to_float():
    cfg = build(Outer, {"name": "x", "inner": {"rate": 1}, "sizes": [1, 2]})
    assert cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float) and cfg.sizes == [1, 2]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "x", "stpes": 1}, r"unknown key 'stpes'; valid keys: inner, name, note, sizes, steps"),
        ({"name": "x", "inner": {"mode": "c"}}, r"inner.mode = 'c' is not valid; choose one of: a, b"),
        ({"name": "x", "steps": "many"}, r"steps must be an integer, got 'many'"),
        ({"name": "x", "steps": True}, r"steps must be an integer"),
        ({"name": 3}, r"name must be a string"),
        ({}, r"missing key 'name'"),
        ({"name": "x", "sizes": ["a"]}, r"sizes\[0\] must be an integer"),
    ],
)
def test_build_rejects_bad_input_with_one_line(data, message):
    with pytest.raises(DDKitError, match=message) as err:
        build(Outer, data)
    assert "\n" not in str(err.value)


def test_overrides_parse_yaml_scalars_and_nesting():
    parsed = parse_overrides(["--inner.rate=0.5", "steps=4", "--sizes=[1,2]", "--note=hello"])
    assert parsed == {"inner": {"rate": 0.5}, "steps": 4, "sizes": [1, 2], "note": "hello"}
    cfg = build(Outer, merge({"name": "x", "inner": {"mode": "b"}}, parsed))
    assert cfg.inner == Inner(rate=0.5, mode="b") and cfg.steps == 4
    with pytest.raises(DDKitError, match="--key=value"):
        parse_overrides(["steps"])


def test_load_yaml_is_safe_and_strict(tmp_path):
    (tmp_path / "bad.yaml").write_text("!!python/object/apply:os.system ['echo hi']")
    with pytest.raises(DDKitError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(DDKitError, match="mapping"):
        load_yaml(tmp_path / "list.yaml")


def test_options_added_later_leave_content_hashes_alone_while_at_their_default():
    from dataclasses import dataclass, field

    from ddkit.config import ADDED_OPTION, hash_dict, to_dict

    @dataclass(frozen=True)
    class Before:
        lr: float = 0.1

    @dataclass(frozen=True)
    class After:
        lr: float = 0.1
        steps: int = field(default=0, metadata=ADDED_OPTION)
        shifts: list = field(default_factory=list, metadata=ADDED_OPTION)

    assert hash_dict(After()) == to_dict(Before()) == {"lr": 0.1}
    assert hash_dict(After(steps=5)) == {"lr": 0.1, "steps": 5}
    assert hash_dict({"nested": [After(shifts=["blur"])]}) == {"nested": [{"lr": 0.1, "shifts": ["blur"]}]}
