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


@dataclass(frozen=True)
class OuterWithItsOwnInner(Outer):
    inner: Inner = field(default_factory=lambda: Inner(rate=0.5, mode="b"))


def test_a_partial_nested_mapping_keeps_the_fields_own_default_for_what_it_leaves_out():
    cfg = build(OuterWithItsOwnInner, {"name": "x", "inner": {"rate": 2}})
    assert cfg.inner == Inner(rate=2.0, mode="b")
    assert build(Outer, {"name": "x", "inner": {"rate": 2}}).inner == Inner(rate=2.0, mode="a")


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


def _typed_fields(cls, prefix=""):
    """(dotted name, type) of every leaf field of a config dataclass, nested configs included."""
    import dataclasses
    from typing import get_type_hints

    hints = get_type_hints(cls)
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        if dataclasses.is_dataclass(hint):
            yield from _typed_fields(hint, f"{prefix}{item.name}.")
        else:
            yield f"{prefix}{item.name}", hint


def _all_configs():
    from ddkit.data import DatasetConfig
    from ddkit.diffusion.train import PriorRecipe
    from ddkit.evaluate.presets import EvalPreset
    from ddkit.methods import METHODS
    from ddkit.models.teachers import TeacherConfig
    from ddkit.pipeline import RunConfig

    return [METHODS.get(name).config_class for name in METHODS.names()] + [
        RunConfig, DatasetConfig, EvalPreset, TeacherConfig, PriorRecipe]


SPELLINGS = {
    float: (["1e-3", "1E-3", "1.0e-3", ".001", "0.001", "+1e-3"], 0.001),
    int: (["12", "+12", "1_2", "0xc", "1.2e1", "12.0"], 12),
    bool: (["true", "True", "TRUE"], True),
}


def _scalar_type(hint):
    """(scalar type, is a list of it) of a field hint, through Optional[...]."""
    import types
    from typing import Union, get_args, get_origin

    if get_origin(hint) in (Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    if get_origin(hint) in (list, tuple):
        return get_args(hint)[0], True
    return hint, False


def test_every_typed_field_reads_numbers_in_every_spelling_and_booleans_only_as_true_false():
    from ddkit.config import _coerce

    seen = {float: 0, int: 0, bool: 0, str: 0}
    for cls in _all_configs():
        for name, hint in _typed_fields(cls):
            base, is_list = _scalar_type(hint)
            if base not in seen:
                continue
            seen[base] += 1
            def read(text, hint=hint, name=name):
                return _coerce(hint, _leaf(parse_overrides([f"--{name}={text}"]), name), name)

            wrap = (lambda v: [v]) if is_list else (lambda v: v)  # `--ipcs=10` means [10]
            if base in SPELLINGS:
                spellings, expected = SPELLINGS[base]
                for text in spellings:
                    value = read(text)
                    assert value == wrap(expected) and type(value[0] if is_list else value) is base, (cls.__name__, name, text)
            if base is bool:
                for text in ("yes", "no", "on", "off", "1", "0", "y"):
                    with pytest.raises(DDKitError, match="must be true or false"):
                        read(text)
            if base is str:
                for text in ("1e-3", "007", "true", "on", "2024-01-01"):
                    assert read(text) == wrap(text), (cls.__name__, name, text)
    assert all(count >= 3 for count in seen.values()), seen  # the walk really reached every kind of field


def _leaf(nested, dotted):
    for part in dotted.split("."):
        nested = nested[part]
    return nested


def test_lr_in_exponent_notation_builds_a_recipe():
    from ddkit.training import TrainRecipe

    recipe = build(TrainRecipe, parse_overrides(["--lr=1e-3", "--epochs=1e2", "--channels_last=true"]))
    assert recipe.lr == 0.001 and recipe.epochs == 100 and recipe.channels_last is True
    with pytest.raises(DDKitError, match="channels_last must be true or false, got 'yes'"):
        build(TrainRecipe, parse_overrides(["--channels_last=yes"]))
