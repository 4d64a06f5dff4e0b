"""Shipped class lists (presets/classes/<name>.yaml): ImageNet-1k and the subsets papers use.

ImageNet classes are named by WordNet ids (the folder names of an ImageNet tree); a class's
index in an ImageNet-1k model (torchvision, timm, DiT) is the position of its id in the sorted
list of the 1,000 ids, which is `imagenet1k`'s order. The subsets are sorted too, so their order
is the sorted folder order of a tree holding them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ddkit.config import load_yaml
from ddkit.errors import DDKitError
from ddkit.presets import preset_path

IMAGENET = "imagenet1k"


@dataclass(frozen=True)
class ClassList:
    name: str
    wnids: list[str]
    names: list[str]  # human-readable names where the list ships them, else the ids


def load_class_list(name: str) -> ClassList:
    """A shipped list by name, or a YAML file with `wnids:` (and optionally `names:`)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else preset_path("classes", name)
    if not path.is_file():
        raise DDKitError(f"class list file {path} does not exist")
    data = load_yaml(path)
    wnids = [str(w) for w in data.get("wnids", [])]
    names = [str(n) for n in data.get("names", wnids)]
    if not wnids or len(names) != len(wnids):
        raise DDKitError(f"class list {path} needs a non-empty `wnids:` list and, if given, one name per id")
    return ClassList(path.stem, wnids, names)


def imagenet_indices(wnids: list[str]) -> list[int]:
    """The ImageNet-1k class index of each WordNet id."""
    position = {w: i for i, w in enumerate(load_class_list(IMAGENET).wnids)}
    unknown = [w for w in wnids if w not in position]
    if unknown:
        raise DDKitError(f"{unknown[0]!r} is not an ImageNet-1k class id (WordNet id like n01440764); "
                         "the class folders must be named by their ImageNet ids")
    return [position[w] for w in wnids]


def imagenet_names(wnids: list[str]) -> list[str]:
    """The readable ImageNet name (its first synonym) of each WordNet id."""
    full = load_class_list(IMAGENET)
    names = dict(zip(full.wnids, full.names))
    return [names[w].split(",")[0] for w in wnids if w in names] if all(w in names for w in wnids) else list(wnids)
