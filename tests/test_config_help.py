"""One help line per config option, read from the trailing comment of its declaration."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from ddkit.config_help import OptionHelp, describe_options
from ddkit.methods import METHODS


@dataclass(frozen=True)
class Inner:
    steps: int = 50  # denoising steps
    mode: Literal["a", "b"] = "a"  # a or b


@dataclass(frozen=True)
class Outer:
    """A docstring # that is not a comment."""

    # A comment on its own line belongs to no field.
    teachers: list[str] = field(
        default_factory=lambda: ["x", "y"],  # the comment of a declaration spread over lines
    )
    limit: Optional[float] = None  # no limit when null
    inner: Inner = field(default_factory=lambda: Inner(steps=3))
    label: str = ""  # "" means: the dataset's own

    def check(self) -> None:
        value: int = 1  # a local variable, not a field
        del value


@dataclass(frozen=True)
class Derived(Outer):
    limit: Optional[float] = 2.0
    label: str = "mine"  # overridden help


def test_options_read_type_default_and_trailing_comment():
    assert describe_options(Outer) == [
        OptionHelp("teachers", "list[str]", "[x, y]", "the comment of a declaration spread over lines"),
        OptionHelp("limit", "float | null", "null", "no limit when null"),
        OptionHelp("inner.steps", "int", "3", "denoising steps"),  # the parent's default of the nested config
        OptionHelp("inner.mode", "a | b", "a", "a or b"),
        OptionHelp("label", "str", '""', '"" means: the dataset\'s own'),
    ]


def test_a_subclass_keeps_its_parents_help_unless_it_gives_its_own():
    options = {o.name: o for o in describe_options(Derived)}
    assert (options["limit"].default, options["limit"].help) == ("2.0", "no limit when null")
    assert (options["label"].default, options["label"].help) == ("mine", "overridden help")


@pytest.mark.parametrize("method", METHODS.names())
def test_every_option_of_every_method_has_a_help_line(method):
    for option in describe_options(METHODS.get(method).config_class):
        assert option.help and option.type and option.default, option
