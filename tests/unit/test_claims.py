"""What the relay may take from the outbox, as the store's in-memory claims and marks say.

The database says which rows are unpublished; ``Claims.taken`` is what the relay skips
among them, ``Claims.marked`` what a re-issue skips and what the next write makes durable.
"""

from __future__ import annotations

from eodes_node.adapters.sql.claims import Claims


def test_claimed_ids_are_not_relayable() -> None:
    claims = Claims()
    claims.claim([1, 2])
    assert claims.taken() == {1, 2}
    # A claim is the publisher's business only: a re-issue does not skip it.
    assert claims.marked() == frozenset()


def test_release_hands_an_id_back_to_the_relay() -> None:
    claims = Claims()
    claims.claim([1, 2])
    claims.release([2])
    assert claims.taken() == {1}


def test_a_marked_id_is_not_relayable_until_its_mark_is_written() -> None:
    claims = Claims()
    claims.claim([1])
    claims.mark([1])
    assert claims.taken() == {1}
    assert claims.marked() == {1}
    claims.written(claims.marked())
    # From here the database no longer lists it as unpublished, and nothing holds it.
    assert claims.taken() == frozenset()
    assert claims.marked() == frozenset()


def test_releasing_a_confirmed_id_does_not_undo_its_mark() -> None:
    claims = Claims()
    claims.claim([1])
    claims.mark([1])
    claims.release([1])
    assert claims.taken() == {1}


def test_a_mark_made_while_marks_are_written_is_kept() -> None:
    claims = Claims()
    claims.mark([1])
    writing = claims.marked()  # a commit or flush takes the marks it writes
    claims.mark([2])
    claims.written(writing)
    assert claims.marked() == {2}
    assert claims.taken() == {2}


def test_two_writers_of_the_same_marks_remove_them_once_each() -> None:
    claims = Claims()
    claims.mark([1, 2])
    by_commit = claims.marked()
    by_flush = claims.marked()
    claims.written(by_flush)
    claims.mark([3])
    claims.written(by_commit)
    assert claims.marked() == {3}


def test_the_sets_handed_out_are_snapshots() -> None:
    claims = Claims()
    claims.claim([1])
    claims.mark([2])
    taken, marked = claims.taken(), claims.marked()
    claims.release([1])
    claims.mark([3])
    assert taken == {1, 2}
    assert marked == {2}
