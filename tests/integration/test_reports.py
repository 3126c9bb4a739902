"""The ``Reports`` read port, the same assertions on the in-memory fake and on SQLite.

KR's service runs on the store under test with CN on the fakes beside it; the reports
must show what happened: states, receipts, feedback per item, cancellation, replacement,
the verification look-up. A look-up by number stays an index probe (query plans).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from eodes_node.adapters.sql import SqlStore
from eodes_node.adapters.sql.reports import SqlReports
from eodes_node.ports import CertificateFilter
from eodes_node.testing.services import ServicePair, ServiceSide
from tests.unit.test_service import cancellation, feedback, number, records


@pytest.fixture(params=["memory", "sqlite"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ServicePair]:
    pair = ServicePair()
    if request.param == "memory":
        yield pair
        return
    url = f"sqlite:///{tmp_path / 'kr.db'}"
    store = SqlStore(url, clock=pair.clock)
    await store.open()
    reports = SqlReports(url, own="KR", partner="CN")
    await reports.open()
    pair.kr = ServiceSide("KR", "CN", pair.clock, retry=pair.kr.retry, store=store, reports=reports)
    pair.kr.connect(pair.cn.key)
    pair.cn.connect(pair.kr.key)
    try:
        yield pair
    finally:
        await reports.close()
        await store.close()


async def scenario(pair: ServicePair) -> dict[str, dict[str, Any]]:
    one, two, three = records(3, seed=91)
    two["items"] = [two["items"][0], dict(two["items"][0], item_number=2)]
    await pair.kr.submit([one, two, three])
    await pair.exchange()
    await pair.cn.submit_feedback([feedback(two, denied=2)])
    await pair.kr.submit([cancellation(one)], kind="coo-cancellation")
    (new,) = records(1, seed=92)
    new["back_reference"] = {
        "kind": "replaces",
        "certificate_number": number(three),
        "issue_date": three["header"]["issue_date"],
        "reason": "consignee address corrected",
    }
    await pair.kr.submit([new], kind="coo-replacement")
    await pair.exchange()
    return {"one": one, "two": two, "three": three, "new": new}


async def test_listing_filters_and_pages(pair: ServicePair) -> None:
    recs = await scenario(pair)
    reports = pair.kr.reports
    page = await reports.certificates(CertificateFilter())
    assert page.total == 4
    assert {s.number for s in page.items} == {number(r) for r in recs.values()}
    assert {(s.agreement, s.exporter_country, s.importer_country) for s in page.items} == {
        ("KCFTA", "KR", "CN")
    }
    seen: list[str] = []
    cursor = None
    while True:
        chunk = await reports.certificates(CertificateFilter(limit=3, cursor=cursor))
        seen += [s.number for s in chunk.items]
        cursor = chunk.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(s.number for s in page.items)
    partial = await reports.certificates(CertificateFilter(state="partial", agreement="kcfta"))
    assert [s.number for s in partial.items] == [number(recs["two"])]
    ref = recs["new"]["header"]["reference_number"].lower()
    by_ref = await reports.certificates(CertificateFilter(number=ref))
    assert [s.number for s in by_ref.items] == [number(recs["new"])]
    none = await reports.certificates(CertificateFilter(issued_to=date(2000, 1, 1)))
    assert (none.total, none.items, none.next_cursor) == (0, [], None)
    with pytest.raises(ValueError, match="not a cursor"):
        await reports.certificates(CertificateFilter(cursor="bogus"))


async def test_detail_shows_receipts_feedback_cancellation_and_replacement(
    pair: ServicePair,
) -> None:
    recs = await scenario(pair)
    reports = pair.kr.reports
    (two,) = await reports.certificate(number(recs["two"]).lower())
    assert two.summary.state == "partial"
    assert [(m.direction, m.kind, m.status) for m in two.messages] == [
        ("out", "coo", "delivered"),
        ("in", "feedback", "accepted"),
    ]
    (fb,) = two.feedback
    assert (fb.decision, fb.declaration_reference) == ("partial", "IMP-1")
    assert [(i.item_number, i.granted, i.reason) for i in fb.items] == [
        (1, True, None),
        (2, False, "ORIGIN_NOT_MET"),
    ]
    (one,) = await reports.certificate(number(recs["one"]))
    assert one.summary.state == "cancelled"
    assert one.cancellation_reason == "exporter withdrew the application"
    (three,) = await reports.certificate(number(recs["three"]))
    assert three.replaced_by == number(recs["new"])
    (new,) = await reports.certificate(number(recs["new"]))
    assert new.replaces == number(recs["three"])
    assert await reports.certificate("KR1999NOWHERE") == []
    board = await reports.dashboard()
    assert board.by_state["exporter"] == {
        "delivered": 1,
        "partial": 1,
        "cancelled": 1,
        "replaced": 1,
    }
    assert board.pending == 0
    assert board.last_receipt_at is not None


async def test_verification_needs_the_printed_reference_and_code(pair: ServicePair) -> None:
    recs = await scenario(pair)
    header = recs["two"]["header"]
    reports = pair.kr.reports
    found = await reports.verify_reference(
        header["reference_number"].lower(), header["reference_code"].lower()
    )
    assert found is not None
    assert (found.number, found.role, found.state, found.signed_by) == (
        number(recs["two"]),
        "exporter",
        "partial",
        "KR",
    )
    assert found.envelope.count(b".") == 2
    assert found.kid == pair.kr.key.kid
    assert not hasattr(found.exporter, "tax_id")
    assert await reports.verify_reference(header["reference_number"], "WRONG0CODE") is None
    assert await reports.verify_reference("REF-NOPE", header["reference_code"]) is None
    replaced = recs["three"]["header"]
    old = await reports.verify_reference(replaced["reference_number"], replaced["reference_code"])
    assert old is not None
    assert old.replaced_by == number(recs["new"])
    await reports.ping()


async def test_every_look_up_by_number_reference_or_id_is_an_index_probe(
    tmp_path: Path,
) -> None:
    """What status, the API and the verification page run, on both sides, captured as
    SQLite runs it (the report index's catch-up included): no statement reads a whole
    table, so a look-up costs the same in a store of ten years as in a new one."""
    pair = ServicePair()
    sides = {}
    for own, partner in (("KR", "CN"), ("CN", "KR")):
        url = f"sqlite:///{tmp_path / own}.db"
        store = SqlStore(url, clock=pair.clock)
        await store.open()
        reports = SqlReports(url, own=own, partner=partner)
        await reports.open()
        side = ServiceSide(own, partner, pair.clock, retry=pair.kr.retry, store=store)
        sides[own] = (side, store, reports)
    pair.kr, pair.cn = sides["KR"][0], sides["CN"][0]
    pair.kr.connect(pair.cn.key)
    pair.cn.connect(pair.kr.key)
    try:
        recs = await scenario(pair)
        header = recs["two"]["header"]
        for own, (_, _, reports) in sides.items():
            # The first read catches the report index up on everything: traced too; each
            # look-up finds its certificate, on the exporter's side and the importer's.
            statements = await _statements_of(
                reports,
                lambda r=reports: r.certificate(header["certificate_number"]),
                lambda r=reports: r.certificate(header["certificate_number"].lower()),
                lambda r=reports: r.verify_reference(
                    header["reference_number"], header["reference_code"]
                ),
                lambda r=reports: r.certificates(CertificateFilter(number="no-such-number")),
                lambda r=reports: r.certificates(
                    CertificateFilter(number=header["reference_number"])
                ),
            )
            assert len(statements) > 10, statements
            found = await reports.verify_reference(
                header["reference_number"], header["reference_code"]
            )
            assert found is not None
            assert found.envelope.count(b".") == 2
            assert [
                d.summary.number for d in await reports.certificate(header["certificate_number"])
            ] == [header["certificate_number"]]
            listing = await reports.certificates(
                CertificateFilter(number=header["reference_number"])
            )
            assert [i.number for i in listing.items] == [header["certificate_number"]]
            plans = await reports._thread.run(partial(_plans, statements=statements))
            for statement, plan in plans:
                assert not _full_scans(plan), f"{own}: {statement}\n{plan}"
    finally:
        for _, store, reports in sides.values():
            await reports.close()
            await store.close()


async def _statements_of(reports: SqlReports, *reads: Any) -> list[str]:
    """The SQL each read ran, with its values bound (SQLite's trace callback)."""
    seen: list[str] = []

    def tracing(conn: Any, on: bool) -> None:
        conn.connection.driver_connection.set_trace_callback(seen.append if on else None)

    await reports._thread.run(lambda c: tracing(c, True), fsync=False)
    try:
        for read in reads:
            await read()
    finally:
        await reports._thread.run(lambda c: tracing(c, False), fsync=False)
    return [s for s in seen if s.lstrip().upper().startswith("SELECT")]


def _plans(conn: Any, statements: list[str]) -> list[tuple[str, list[str]]]:
    sqlite = conn.connection.driver_connection
    return [
        (s, [str(row[-1]) for row in sqlite.execute("EXPLAIN QUERY PLAN " + s)]) for s in statements
    ]


def _full_scans(plan: list[str]) -> list[str]:
    """Plan lines that read a whole table or index: ``SCAN``, with or without an index
    (a ``SEARCH`` is a probe)."""
    return [line for line in plan if line.startswith("SCAN")]


async def test_the_console_listing_pages_walk_an_index_in_order(pair: ServicePair) -> None:
    """The first page, and a page filtered by state, read the newest certificates off an
    index in order, stopping at the page's end: no sort of the whole table."""
    if not isinstance(pair.kr.reports, SqlReports):
        pytest.skip("query plans are SQLite's")
    await scenario(pair)
    reports = pair.kr.reports
    statements = await _statements_of(
        reports,
        lambda: reports.certificates(CertificateFilter()),
        lambda: reports.certificates(CertificateFilter(state="failed")),
    )
    listings = [s for s in statements if "ORDER BY c.updated_at DESC" in s]
    assert len(listings) == 2, statements
    for statement, plan in await reports._thread.run(partial(_plans, statements=listings)):
        assert any("USING INDEX ix_certificates_" in line for line in plan), (statement, plan)
        # Ties on the time are put in order as they come ("RIGHT PART"); a whole sort
        # would say "USE TEMP B-TREE FOR ORDER BY".
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, (statement, plan)
