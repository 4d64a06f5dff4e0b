"""Seeds derived from what a piece of work is, never from process state or call order."""

from __future__ import annotations

import hashlib
from typing import Any


def item_seed(*parts: Any) -> int:
    """A seed derived from the work item itself (method, class, indices, …)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:7], "little")
