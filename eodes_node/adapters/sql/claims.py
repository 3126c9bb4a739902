"""Which outbox rows the relay must leave alone, kept in memory beside the database.

A publication committed by a batch is handed straight to its publisher (claimed); the
relay must not publish it a second time meanwhile. Once the broker confirms it, it is
marked; writing that mark (deleting its outbox row) costs an fsync, so marks wait for
the next commit or flush and keep the row from the relay until then. Marks are removed
by value once written: a commit and a flush may write the same marks, and a mark made
while one of them writes must survive it.

The store thread reads these while the event loop changes them; each step is one set
operation, ordered so that a concurrent reader always finds an id in one of the sets.
"""

from __future__ import annotations

from collections.abc import Iterable


class Claims:
    def __init__(self) -> None:
        self._claimed: set[int] = set()  # handed to a publisher, not confirmed or released
        self._marked: set[int] = set()  # confirmed, the mark not yet written

    def claim(self, ids: Iterable[int]) -> None:
        """A batch's publisher holds these until it marks or releases them."""
        self._claimed.update(ids)

    def mark(self, ids: Iterable[int]) -> None:
        """The broker confirmed these; their mark is to be written."""
        ids = set(ids)
        # Marked before unclaimed: a concurrent `taken` always finds the id in one of them.
        self._marked.update(ids)
        self._claimed.difference_update(ids)

    def release(self, ids: Iterable[int]) -> None:
        """Publishing these failed: the relay may take them."""
        self._claimed.difference_update(ids)

    def marked(self) -> frozenset[int]:
        """Confirmed, mark not yet written: to write now (then pass the same set to
        ``written``), and for a re-issue to skip."""
        return frozenset(self._marked)

    def written(self, marks: Iterable[int]) -> None:
        """These marks are in the database: the relay's query no longer returns them."""
        self._marked.difference_update(marks)

    def taken(self) -> frozenset[int]:
        """Ids the relay must skip."""
        claimed = frozenset(self._claimed)  # read first: `mark` adds before it removes
        return claimed | self._marked
