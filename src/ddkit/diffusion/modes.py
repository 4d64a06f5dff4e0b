"""Modes of a class in the prior's sample space: flat k-means (MGD3) and divisive bisecting
k-means (ManifoldGD), each returning centres and the members of each centre's cluster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sklearn.cluster import KMeans

from ddkit.errors import DDKitError


@dataclass
class Modes:
    centres: torch.Tensor  # (k, D)
    members: list[torch.Tensor]  # row indices into the clustered points, one tensor per centre


def _check(points: torch.Tensor, k: int, what: str) -> np.ndarray:
    if k > len(points):
        raise DDKitError(f"{k} modes asked of {what} with only {len(points)} real images to cluster; "
                         f"lower the IPC to at most {len(points)} or raise real_per_class")
    return points.flatten(1).double().cpu().numpy()


def kmeans_modes(points: torch.Tensor, k: int, seed: int, what: str = "a class") -> Modes:
    data = _check(points, k, what)
    fit = KMeans(n_clusters=k, n_init=3, random_state=seed % 2**31).fit(data)
    labels = torch.from_numpy(fit.labels_)
    centres = torch.from_numpy(fit.cluster_centers_).float()
    return Modes(centres, [torch.nonzero(labels == j).flatten() for j in range(k)])


@dataclass
class _Node:
    members: torch.Tensor
    centre: torch.Tensor
    sse: float


def _node(data: np.ndarray, members: torch.Tensor) -> _Node:
    rows = data[members.numpy()]
    centre = rows.mean(0)
    return _Node(members, torch.from_numpy(centre).float(), float(((rows - centre) ** 2).sum()))


def bisecting_modes(points: torch.Tensor, k: int, seed: int, level: Literal["leaves", "tree"] = "leaves",
                    what: str = "a class") -> Modes:
    """Divisive clustering: split the leaf with the largest SSE in two (2-means) until the tree has
    k leaves (`level="leaves"`), or k nodes in creation order, root first (`level="tree"`: the
    representatives then span coarse to fine structure)."""
    data = _check(points, k, what)
    root = _node(data, torch.arange(len(data)))
    created, leaves = [root], [root]
    enough = (lambda: len(leaves) >= k) if level == "leaves" else (lambda: len(created) >= k)
    while not enough():
        splittable = [leaf for leaf in leaves if len(leaf.members) >= 2]
        parent = max(splittable, key=lambda leaf: leaf.sse)
        halves = KMeans(n_clusters=2, n_init=3, random_state=(seed + len(created)) % 2**31).fit(data[parent.members.numpy()]).labels_
        children = [_node(data, parent.members[torch.from_numpy(halves == side)]) for side in (0, 1)]
        leaves = [leaf for leaf in leaves if leaf is not parent] + children
        created += children
    chosen = leaves if level == "leaves" else created[:k]
    return Modes(torch.stack([node.centre for node in chosen]), [node.members for node in chosen])
