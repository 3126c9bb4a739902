"""The ``Audit`` port over ``InMemoryStore``'s tables: per-certificate reports, the hash chain.

A mixin, so the in-memory store stays one object that plays every port, as the SQL
database does; the chain is checked by the same ``verify_chain`` the tables module shares.
"""

from __future__ import annotations

from datetime import UTC, datetime

from eodes_node.core.decide import CertFacts
from eodes_node.ports import CertificateReport, HistoryLine, InboundRow
from eodes_node.testing.tables import HistoryRecord, StoredOutbound, verify_chain


class MemoryAudit:
    """Needs the tables ``InMemoryStore`` keeps."""

    _inbound: dict[tuple[str, str], tuple[InboundRow, float]]
    _outbound: dict[str, StoredOutbound]
    _certificates: dict[tuple[str, str], CertFacts]
    history: list[HistoryRecord]

    # -- Audit ---------------------------------------------------------------------------

    async def report(self, number: str) -> list[CertificateReport]:
        return [self._report(cert) for (_, n), cert in self._certificates.items() if n == number]

    def _report(self, cert: CertFacts) -> CertificateReport:
        lines = [
            HistoryLine(datetime.fromtimestamp(h.at, UTC), h.event, h.before, h.after, h.message_id)
            for h in self.history
            if h.number == cert.number and h.role == cert.role.value
        ]
        ids = {line.message_id for line in lines}
        sent = sorted(
            (r for r in self._outbound.values() if r.certificate_number == cert.number),
            key=lambda r: r.created_at,
        )
        received = sorted(
            (
                (row, at)
                for row, at in self._inbound.values()
                if row.certificate_number == cert.number
                and (row.message_id in ids or row.kind != "receipt")
            ),
            key=lambda pair: pair[1],
        )
        messages = [("out", r.kind.value, r.message_id, r.status, r.attempts) for r in sent]
        messages += [("in", r.kind.value, r.message_id, r.status, 1) for r, _ in received]
        return CertificateReport(
            cert.number, cert.role.value, cert.state.value, cert.coo_message_id, lines, messages
        )

    async def verify_audit_chain(self) -> int:
        """Recompute the history hash chain; returns the rows checked or raises."""
        return verify_chain(self.history)
