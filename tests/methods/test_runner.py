"""The work-item runner in one process: item order, resume, fingerprints, damaged items.
(Several processes: tests/test_distributed.py.)"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from ddkit.errors import DDKitError
from ddkit.methods.runner import load_item, run_items


@dataclass(frozen=True)
class Item:
    number: int

    @property
    def key(self) -> str:
        return f"item-{self.number}"


ITEMS = [Item(n) for n in range(4)]


class Maker:
    """Makes an item's images from its own seed, counting calls; fails at `fail_at` if given."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.made: list[int] = []
        self.fail_at = fail_at

    def __call__(self, item: Item) -> tuple[torch.Tensor, dict]:
        if item.number == self.fail_at:
            raise DDKitError("stopped on purpose")
        self.made.append(item.number)
        return torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(item.number)), {"number": item.number}


def test_items_come_back_in_item_order_and_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    interrupted = Maker(fail_at=2)
    with pytest.raises(DDKitError):
        run_items(ITEMS, "f1", interrupted, "make", tmp_path)
    assert interrupted.made == [0, 1]
    resumed = Maker()
    results = run_items(ITEMS, "f1", resumed, "make", tmp_path)
    assert resumed.made == [2, 3]  # only what the interrupted run had not finished
    uninterrupted = run_items(ITEMS, "f1", Maker(), "make", None)
    for (images, record), (expected, expected_record) in zip(results, uninterrupted):
        assert torch.equal(images, expected) and record == expected_record


def test_items_of_another_configuration_are_made_again(tmp_path):
    run_items(ITEMS, "old", Maker(), "make", tmp_path)
    again = Maker()
    run_items(ITEMS, "new", again, "make", tmp_path)
    assert again.made == [0, 1, 2, 3]
    assert load_item(tmp_path, "item-0", "old") is None and load_item(tmp_path, "item-0", "new") is not None


def test_a_damaged_item_file_is_made_again(tmp_path):
    run_items(ITEMS, "f", Maker(), "make", tmp_path)
    (tmp_path / "item-1.safetensors").write_bytes(b"truncated by a crash")
    again = Maker()
    results = run_items(ITEMS, "f", again, "make", tmp_path)
    assert again.made == [1] and results[1][1] == {"number": 1}
