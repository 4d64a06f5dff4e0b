"""One work-item runner for every method that makes its set in independent pieces.

A work item (a batch of images of one or more classes) draws only from its own seed, so the set
does not depend on which process made which item, or in what order. The runner therefore:

- skips items an earlier, interrupted run of the same configuration finished (resume);
- spreads the rest round robin over the torchrun ranks (one process: all of them);
- writes each finished item atomically into the set's work folder, where a rerun finds it even
  when another rank, or the whole job, died before the set was assembled;
- waits for every rank, then reads all items back in item order on every rank.

The items are read back from the files even by the process that made them, so a set made in one
go, resumed, or made by any number of processes is the same bytes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol, Sequence, TypeVar

import torch
from rich.progress import Progress

from ddkit import distributed
from ddkit.errors import DDKitError
from ddkit.progress import steps
from ddkit.runs import atomic_write_tensors, read_tensors

log = logging.getLogger(__name__)
ItemResult = tuple[torch.Tensor, dict]  # the item's images and a JSON-able record of how it was made


class WorkItem(Protocol):
    @property
    def key(self) -> str: ...  # a file name, unique within a set


Item = TypeVar("Item", bound=WorkItem)


def run_items(
    items: Sequence[Item], fingerprint: str, make: Callable[[Item], ItemResult], description: str,
    workdir: Optional[Path] = None, progress: Optional[Progress] = None,
) -> list[ItemResult]:
    """The result of every item, in item order, on every rank; `make` runs once per unfinished item, somewhere."""
    world = distributed.current()
    if workdir is None:
        if world.distributed:
            raise DDKitError("synthesis on several processes shares its work items through files: give it a work "
                             "folder (ddkit synthesize/run always do)")
        return list(_made(items, 0, make, None, fingerprint, f"{description} ({len(items)} batches)", progress))
    # Rank 0 alone decides what is left, so that every rank shards the same list even while a fast
    # rank is already writing its first items.
    pending = distributed.broadcast([i for i, item in enumerate(items) if load_item(workdir, item.key, fingerprint) is None])
    if world.is_main and world.distributed and len(pending) < world.size:
        log.warning("%d processes for %d unfinished work items: %d of them have nothing to do", world.size, len(pending),
                    world.size - len(pending))
    mine = [items[i] for i in distributed.shard(pending, world)]
    label = f"{description} ({len(items)} batches" + (f", {len(mine)} of them on this process)" if world.distributed else ")")
    # Through gather_results, a failing rank stops every rank with its error instead of leaving them at the barrier.
    distributed.gather_results(lambda: sum(1 for _ in _made(mine, len(items) - len(pending), make, workdir, fingerprint,
                                                            label, progress)))
    results = [load_item(workdir, item.key, fingerprint) for item in items]
    distributed.barrier()  # rank 0 removes the work folder once the set is saved: not while another rank still reads it
    missing = [item.key for item, result in zip(items, results) if result is None]
    if missing:
        raise DDKitError(f"work item {missing[0]} in {workdir} vanished or was damaged while the set was made; run the "
                         "same command again to make it anew")
    return results  # type: ignore[return-value]


def _made(
    mine: Sequence[Item], resumed: int, make: Callable[[Item], ItemResult], workdir: Optional[Path],
    fingerprint: str, label: str, progress: Optional[Progress],
) -> Iterator[ItemResult]:
    """Make (and keep) this rank's items under a progress bar of the items an earlier run finished and its own."""
    with steps(progress, label, resumed + len(mine), unit="batch") as bar:
        for _ in range(resumed):
            bar.skip()
        for item in mine:
            result = make(item)
            save_item(workdir, item.key, fingerprint, *result)
            bar.advance()
            yield result


def save_item(workdir: Optional[Path], key: str, fingerprint: str, images: torch.Tensor, record: Optional[dict] = None) -> None:
    """Keep a finished work item in the run's work directory, so an interrupted run can skip it."""
    if workdir:
        atomic_write_tensors(Path(workdir) / f"{key}.safetensors", {"images": images.contiguous()},
                             {"fingerprint": fingerprint, "record": json.dumps(record or {})})


def load_item(workdir: Optional[Path], key: str, fingerprint: str) -> Optional[ItemResult]:
    """A finished item from an earlier (interrupted) run of the same configuration, if any."""
    path = Path(workdir) / f"{key}.safetensors" if workdir else None
    if path is None or not path.exists():
        return None
    try:
        tensors, meta = read_tensors(path)
        if meta.get("fingerprint") != fingerprint:
            return None
        return tensors["images"], json.loads(meta.get("record", "{}"))
    except Exception as err:  # truncated by a crash or a full disk, or not ours: not done, so made again
        log.warning("work item %s is unreadable (%s); making it again", path, type(err).__name__)
        return None
