"""Modes of a class in the prior's sample space: flat k-means (MGD3) and divisive bisecting
k-means (ManifoldGD), each returning centres and the members of each centre's cluster."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
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


def bisecting_modes(points: torch.Tensor, k: int, seed: int, what: str = "a class") -> Modes:
    """Divisive clustering: split the leaf with the largest SSE in two (2-means) until the tree has
    k leaves. The released ManifoldGD code's `divisive_layer` grows the same tree and picks all of
    its k leaves too; its level setting only changes the order in which they are listed."""
    data = _check(points, k, what)
    leaves, splits = [_node(data, torch.arange(len(data)))], 0
    while len(leaves) < k:
        splittable = [leaf for leaf in leaves if len(leaf.members) >= 2]
        parent = max(splittable, key=lambda leaf: leaf.sse)
        splits += 1
        fit = KMeans(n_clusters=2, n_init=3, random_state=(seed + 2 * splits - 1) % 2**31).fit(data[parent.members.numpy()])
        children = [_node(data, parent.members[torch.from_numpy(fit.labels_ == side)]) for side in (0, 1)]
        leaves = [leaf for leaf in leaves if leaf is not parent] + children
    return Modes(torch.stack([leaf.centre for leaf in leaves]), [leaf.members for leaf in leaves])


def matched_to(modes: Modes, starts: torch.Tensor) -> Modes:
    """The modes reordered so that mode j is the one assigned to start j (one mode per start, least
    total squared distance): a sample edited from a set image is guided toward a mode near where it
    starts rather than toward the arbitrary j-th cluster."""
    cost = torch.cdist(starts.flatten(1).double().cpu(), modes.centres.flatten(1).double()).square()
    _, order = linear_sum_assignment(cost.numpy())
    return Modes(modes.centres[torch.from_numpy(order)], [modes.members[j] for j in order])
