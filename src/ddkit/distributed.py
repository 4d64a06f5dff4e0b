"""torchrun support: one process per device, found from the environment torchrun sets.

`ddkit <command>` is the one-process case; `torchrun --nproc_per_node N -m ddkit <command>` (or
`--nnodes`, or `srun` with the same variables) runs N copies that cooperate through
torch.distributed. As in nanoGPT's `train.py`, that is all the distributed part shows: a rank, a
world size, whether this process is the main one, and a few collectives. Rank 0 alone prints
progress and writes shared outputs; the other ranks share the work and wait at barriers.

Collectives go through the default process group (gloo on the CPU, NCCL on GPUs), so with one
process every function here is a cheap no-op.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterator, Optional, Sequence, TypeVar

import torch
import torch.distributed as dist

from ddkit.errors import DDKitError

T = TypeVar("T")
# Ranks wait at barriers while rank 0 alone writes a set or another job holds a lock, which can
# take far longer than torch's default of 10-30 minutes.
TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_MINUTES = "DDKIT_DIST_TIMEOUT_MINUTES", 240


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_world() -> World:
    """The world torchrun (or srun exporting the same variables) launched this process into."""
    def number(name: str, default: int) -> int:
        value = os.environ.get(name, "")
        try:
            return int(value) if value else default
        except ValueError:
            raise DDKitError(f"{name}={value!r} is not a number; launch ddkit with torchrun, or unset it") from None

    return World(number("RANK", 0), number("WORLD_SIZE", 1), number("LOCAL_RANK", 0))


def current() -> World:
    """This process's rank and world size: the process group's once it is initialised."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), launched_world().local_rank)
    return World()


def is_main() -> bool:
    return current().is_main


def start(device: torch.device) -> World:
    """Join the process group when launched by torchrun with more than one process; return the world."""
    world = launched_world()
    if not world.distributed or (dist.is_available() and dist.is_initialized()):
        return current()
    backend = "nccl" if device.type == "cuda" else "gloo"
    minutes = float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_MINUTES))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    return current()


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def process_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes its own GPU (`cuda` means cuda:LOCAL_RANK); the CPU is shared."""
    world = launched_world()
    if device.type == "cuda" and device.index is None and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def barrier() -> None:
    if current().distributed:
        dist.barrier()


def broadcast(value: T) -> T:
    """Rank 0's `value` (any picklable object), on every rank."""
    if not current().distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    world = current()
    if not world.distributed:
        return [value]
    values: list[Any] = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def check_agree(value: Any, what: str) -> None:
    """Fail on every rank, with one line, when the ranks disagree about `value` (e.g. a resolved config)."""
    if not current().distributed:
        return
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]
    digests = gather(digest)
    differing = [rank for rank, d in enumerate(digests) if d != digests[0]]
    if differing:
        raise DDKitError(f"rank {differing[0]} has a different {what} than rank 0; launch every rank with the same "
                         "command, files and package versions")


def shard(items: Sequence[T], world: World | None = None) -> list[T]:
    """This rank's share of `items`: every size-th item from its rank on (round robin)."""
    world = world or current()
    return list(items[world.rank :: world.size])


def on_main(fn: Callable[[], T]) -> T:
    """`fn()` run by rank 0 alone (it writes a shared file, repairs a cache entry); its value on every
    rank. When it fails, every rank fails too, so none is left waiting at the next collective: with
    rank 0's one-line DDKitError, or (for an unexpected error, whose traceback rank 0 prints) with a
    line that points at rank 0."""
    world = current()
    if not world.distributed:
        return fn()
    outcome: tuple[Any, Optional[str]] = (None, None)
    error: Optional[BaseException] = None
    if world.is_main:
        try:
            outcome = (fn(), None)
        except Exception as err:  # any failure must reach the waiting ranks, not only DDKitError
            error = err
            outcome = (None, str(err) if isinstance(err, DDKitError) else f"rank 0 failed ({type(err).__name__}); see its error")
    value, failure = broadcast(outcome)
    if error is not None:
        raise error
    if failure is not None:
        raise DDKitError(failure)
    return value


def gather_results(fn: Callable[[], T]) -> list[T]:
    """Every rank's `fn()` (work of its own, with no collectives inside), in rank order, on every
    rank. When it fails on any rank, it fails on every rank, with the failing rank's one line, so
    no rank is left waiting for the others' results."""
    world = current()
    if not world.distributed:
        return [fn()]
    value, failure, error = None, None, None
    try:
        value = fn()
    except Exception as err:  # any failure must reach the waiting ranks, not only DDKitError
        error = err
        failure = str(err) if isinstance(err, DDKitError) else f"rank {world.rank} failed ({type(err).__name__}); see its error"
    outcomes = gather((value, failure))
    if error is not None:
        raise error
    failures = [f for _, f in outcomes if f is not None]
    if failures:
        raise DDKitError(failures[0])
    return [v for v, _ in outcomes]


@contextmanager
def main_holds(context: ContextManager[Any]) -> Iterator[None]:
    """Run the block on every rank while rank 0 alone holds `context` (a lock on a shared output):
    the ranks of one job share the work, and other jobs wait for it. The other ranks enter the
    block only once rank 0 holds it, and raise its error if it could not take it."""
    with ExitStack() as stack:
        on_main(lambda: stack.enter_context(context))
        yield


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum of `value` over the ranks (a new tensor), on every rank."""
    if not current().distributed:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total


def sync_from_main(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into `module` on every rank (after DDP training each
    rank's batch-norm statistics saw only its own slices; rank 0's are the ones saved)."""
    if current().distributed:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)
