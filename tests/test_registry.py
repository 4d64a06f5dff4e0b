import pytest

from ddkit.errors import DDKitError
from ddkit.registry import Registry


def test_registry_lists_choices_on_unknown_name():
    registry: Registry[int] = Registry("widget")
    registry.register("b")(2)
    registry.register("a")(1)
    assert registry.names() == ["a", "b"] and registry.get("a") == 1 and "b" in registry
    with pytest.raises(DDKitError, match="unknown widget 'c'; choose one of: a, b"):
        registry.get("c")


def test_registry_refuses_duplicates():
    registry: Registry[int] = Registry("widget")
    registry.register("a")(1)
    with pytest.raises(ValueError):
        registry.register("a")(2)
