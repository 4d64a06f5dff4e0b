"""Name, type, default and one line of help for each option of a config dataclass.

The help is the trailing `# comment` of the field's declaration (`lr: float = 0.1  # Adam on
pixels`), read from the class source with `tokenize`: the comment a reader of the code sees is the
help a user of `ddkit list methods` sees, with no second copy in field metadata to drift from it.
A subclass that overrides a default without a comment keeps its parent's help.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


@dataclass(frozen=True)
class OptionHelp:
    name: str  # dotted inside nested configs, as overrides spell it: sampler.steps
    type: str
    default: str
    help: str


def describe_options(config_class: type, defaults: Any = None, prefix: str = "") -> list[OptionHelp]:
    """Every option of `config_class`, nested configs flattened; `defaults` is an instance whose values
    are the defaults (a parent config's default of a nested one may differ from the nested class's own)."""
    hints = get_type_hints(config_class)
    helps = field_help(config_class)
    defaults = config_class() if defaults is None else defaults
    options = []
    for item in dataclasses.fields(config_class):
        if not item.init:
            continue
        hint = hints[item.name]
        default = getattr(defaults, item.name)
        if dataclasses.is_dataclass(hint):
            options += describe_options(hint, default, f"{prefix}{item.name}.")
        else:
            options.append(OptionHelp(prefix + item.name, type_text(hint), value_text(default), helps.get(item.name, "")))
    return options


def field_help(config_class: type) -> dict[str, str]:
    """field name → the trailing comment of its declaration in the nearest class that has one."""
    helps: dict[str, str] = {}
    for cls in reversed([c for c in config_class.__mro__ if dataclasses.is_dataclass(c)]):
        helps.update(trailing_comments(cls))
    return helps


@lru_cache(maxsize=None)
def trailing_comments(cls: type) -> dict[str, str]:
    """`name: type = value  # comment` lines directly in the body of `cls`: name → comment."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[str, str] = {}
    depth, line_start, candidate, declared = 0, True, None, None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.INDENT:
            depth += 1
        elif token.type == tokenize.DEDENT:
            depth -= 1
        elif token.type == tokenize.NEWLINE:  # end of a logical line (a declaration may span lines)
            line_start, candidate, declared = True, None, None
        elif token.type == tokenize.NAME and line_start and depth == 1:
            line_start, candidate = False, token.string
        elif token.type == tokenize.OP and candidate and declared is None:
            declared = candidate if token.string == ":" else ""
        elif token.type == tokenize.COMMENT and declared and declared not in comments:
            comments[declared] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.COMMENT):
            line_start = False
    return comments


def type_text(hint: Any) -> str:
    """A type as a user reads it: `ddim | ddpm`, `list[str]`, `float | null`."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join("null" if a is type(None) else type_text(a) for a in args)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else type_text(a) for a in args)}]"
    return getattr(hint, "__name__", str(hint))


def value_text(value: Any) -> str:
    """A value as it is written in `--key=value` (YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    if value == "":
        return '""'
    return str(value)
