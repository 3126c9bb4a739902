"""Which outbox rows the relay must leave alone: in the database between instances,
in memory within one.

Between instances of a link (PostgreSQL, active/standby) each outbox row names the
store instance holding it and until when (``claimed_by``, ``claimed_until``): a relay
takes only rows free or held by its own instance, locking them as it claims
(``FOR UPDATE SKIP LOCKED``), so two relays never get one row. A takeover voids every
claim (the instance that held them is gone or fenced out); an expired claim is free.

Within one instance, the rest of this module:

A publication committed by a batch is handed straight to its publisher (claimed); the
relay must not publish it a second time meanwhile. Once the broker confirms it, it is
marked; writing that mark (deleting its outbox row) costs an fsync, so marks wait for
the next commit or flush and keep the row from the relay until then. Marks are removed
by value once written: a commit and a flush may write the same marks, and a mark made
while one of them writes must survive it. Writing a mark twice is harmless because an
outbox id is never given to another row (revision 0007).

The store thread reads these while the event loop changes them; each step is one set
operation, ordered so that a concurrent reader always finds an id in one of the sets.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from eodes_node.adapters.sql.statements import Sql

CLAIM_S = 60.0  # how long a claim of a live instance keeps other relays off a row


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


def claim_relayable(
    sql: Sql, owner: str, now: float, limit: int, taken: Collection[int]
) -> list[tuple[Any, ...]]:
    """Up to ``limit`` unbound, unconfirmed rows free for ``owner`` (not in ``taken``),
    claimed for it in this transaction, in id order."""
    query = RELAY_QUERY_POSTGRES if sql.named else RELAY_QUERY
    free: list[tuple[Any, ...]] = []
    after = 0
    while len(free) < limit:
        rows = sql.rows(
            query,
            {"no": False, "after": after, "owner": owner, "now": now, "limit": limit},
        )
        free += [r for r in rows if r[0] not in taken]
        if len(rows) < limit:
            break
        after = rows[-1][0]
    free = free[:limit]
    if not free:
        return []
    # The claim re-checks that each row is still free: on SQLite the read above ran
    # outside the write lock, and a relay claiming meanwhile must win those rows alone.
    statement, params = sql.with_in(
        "UPDATE outbox SET claimed_by = :owner, claimed_until = :until "
        "WHERE (claimed_by IS NULL OR claimed_by = :owner OR claimed_until <= :now) AND",
        "id",
        [r[0] for r in free],
        {"owner": owner, "until": now + CLAIM_S, "now": now},
    )
    won = {row_id for (row_id,) in sql.rows(statement + " RETURNING id", params)}
    return [r for r in free if r[0] in won]


def release_claims(sql: Sql, owner: str, ids: Collection[int]) -> None:
    """Publishing these failed: any relay may take them at once."""
    if ids:
        sql.run_in(
            "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL "
            "WHERE claimed_by = :owner AND",
            "id",
            sorted(ids),
            {"owner": owner},
        )


def void_claims(sql: Sql, owner: str | None = None) -> None:
    """Free the rows ``owner`` holds (a clean close), or every row (a takeover, or the
    one node of a SQLite store starting: whoever held them is gone)."""
    if owner is None:
        sql.run("UPDATE outbox SET claimed_by = NULL WHERE claimed_by IS NOT NULL", {})
    else:
        sql.run("UPDATE outbox SET claimed_by = NULL WHERE claimed_by = :owner", {"owner": owner})


# The columns ``store._queued_row`` reads, in its order.
RELAY_QUERY = (
    "SELECT id, destination, body, message_id, kind, headers, content_type, bound_to "
    "FROM outbox WHERE published = :no AND bound_to IS NULL AND id > :after "
    "AND (claimed_by IS NULL OR claimed_by = :owner OR claimed_until <= :now) "
    "ORDER BY id LIMIT :limit"
)
# Rows another relay is claiming right now are skipped, not waited for.
RELAY_QUERY_POSTGRES = RELAY_QUERY + " FOR UPDATE SKIP LOCKED"
