"""The state table behind one protocol: the in-memory store and Redis implement it.

A batch of messages is applied against a `StateAccess` that the store hands
out for their footprints and takes back with `commit`: one read and one
write per batch, whatever the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from stream.core.engine import Footprint
from stream.core.state import StateAccess


class StateStore(Protocol):
    def load(self, footprints: Iterable[Footprint]) -> StateAccess:
        """State for a batch: everything the footprints may touch."""
        ...

    def commit(self, batch: StateAccess) -> None:
        """Write what the batch changed, all or nothing."""
        ...

    def get_meta(self, name: str) -> str | None: ...

    def set_meta(self, name: str, value: str) -> None: ...

    def accounts_in_view(self) -> Iterator[list[str]]:
        """Accounts with posts in the view, in chunks (for a policy sweep)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """How far the worker's state of one input partition goes."""

    offsets: Mapping[str, int] = field(default_factory=dict)  # topic -> last applied offset
    seq: int = 0  # messages applied so far: numbers the audit records in order
    policy: str | None = None  # the policy version its posts in the view were judged by
    counts: Mapping[str, int] = field(default_factory=dict)  # state sizes, for metrics


@dataclass(frozen=True, slots=True)
class PartitionState:
    """What the state table knows of one input partition (the worker's)."""

    progress: PartitionProgress
    outbox: bytes | None  # outputs of the last committed batch, maybe not all sent
