"""The ``Reports`` read port over ``InMemoryStore``'s tables, with the SQL store's answers.

A mixin, so the in-memory store stays one object that plays every port, as the SQL
database does; its reference is ``eodes_node.adapters.sql.reports``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

from eodes_node.core.decide import CertFacts
from eodes_node.core.work import InboundRow
from eodes_node.ports import (
    CertificateDetail,
    CertificateFilter,
    CertificatePage,
    CertificateSummary,
    Dashboard,
    FeedbackLine,
    HistoryLine,
    MessageLine,
    PublicCertificate,
    SentMessage,
)
from eodes_node.reporting import (
    IndexFacts,
    cancellation_reason,
    code_matches,
    decode_cursor,
    encode_cursor,
    feedback_line,
    folded,
    index_facts,
    payload_of,
    public_certificate,
)
from eodes_node.testing.tables import HistoryRecord, StoredOutbound


def _at(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class MemoryReports:
    """Needs the tables ``InMemoryStore`` keeps; ``own``/``partner`` name the signers."""

    _inbound: dict[tuple[str, str], tuple[InboundRow, float]]
    _outbound: dict[str, StoredOutbound]
    _certificates: dict[tuple[str, str], CertFacts]
    history: list[HistoryRecord]
    own: str = ""
    partner: str = ""

    # -- derived views ---------------------------------------------------------------------

    def _created_token(self, cert: CertFacts, message_id: str) -> bytes | None:
        if cert.role.value == "exporter":
            sent = self._outbound.get(message_id)
            return None if sent is None else sent.token
        for row, _ in self._inbound.values():
            if row.message_id == message_id and row.kind.value != "receipt":
                return row.token
        return None

    def _facts(self, cert: CertFacts) -> IndexFacts:
        first = next(
            (h for h in self.history if h.number == cert.number and h.role == cert.role.value),
            None,
        )
        token = self._created_token(cert, first.message_id) if first else None
        return index_facts(payload_of(token) if token is not None else None)

    def _updated(self, cert: CertFacts) -> float:
        times = [
            h.at for h in self.history if h.number == cert.number and h.role == cert.role.value
        ]
        return max(times, default=0.0)

    def _summary(self, cert: CertFacts) -> CertificateSummary:
        f = self._facts(cert)
        return CertificateSummary(
            cert.number,
            cert.role.value,
            cert.state.value,
            cert.coo_message_id,
            _at(self._updated(cert)),
            f.agreement,
            date.fromisoformat(f.issue_date) if f.issue_date else None,
            f.exporter_country,
            f.importer_country,
            f.reference_number,
        )

    def _matches(self, cert: CertFacts, where: CertificateFilter) -> bool:
        f = self._facts(cert)
        checks = (
            where.state is None or cert.state.value == where.state,
            where.role is None or cert.role.value == where.role,
            where.agreement is None or folded(f.agreement or "") == folded(where.agreement),
            where.issued_from is None or (f.issue_date or "") >= where.issued_from.isoformat(),
            where.issued_to is None or "" < (f.issue_date or "") <= where.issued_to.isoformat(),
            where.number is None
            or folded(where.number) in (folded(cert.number), folded(f.reference_number or "")),
        )
        return all(checks)

    # -- Reports ---------------------------------------------------------------------------

    async def certificates(self, where: CertificateFilter) -> CertificatePage:
        after = decode_cursor(where.cursor, 3) if where.cursor else None
        keyed = sorted(
            ((self._updated(c), c.role.value, c.number, c) for c in self._certificates.values()),
            key=lambda k: (k[0], k[1], k[2]),
            reverse=True,
        )
        matching = [k for k in keyed if self._matches(k[3], where)]
        if after is not None:
            matching = [k for k in matching if (k[0], k[1], k[2]) < tuple(after)]
        page = matching[: where.limit]
        more = len(matching) > where.limit
        cursor = encode_cursor(*page[-1][:3]) if more else None
        total = sum(1 for k in keyed if self._matches(k[3], where))
        return CertificatePage([self._summary(k[3]) for k in page], total, cursor)

    async def certificate(self, number: str) -> list[CertificateDetail]:
        wanted = folded(number)
        return [
            self._detail(c)
            for c in sorted(self._certificates.values(), key=lambda c: c.role.value)
            if folded(c.number) == wanted
        ]

    def _detail(self, cert: CertFacts) -> CertificateDetail:
        history = [
            HistoryLine(_at(h.at), h.event, h.before, h.after, h.message_id)
            for h in self.history
            if h.number == cert.number and h.role == cert.role.value
        ]
        messages, feedback, cancelled = self._messages(cert.number)
        replaced_by = next(
            (
                c.number
                for c in self._certificates.values()
                if c.role is cert.role and self._facts(c).replaces == cert.number
            ),
            None,
        )
        f = self._facts(cert)
        return CertificateDetail(
            self._summary(cert),
            history,
            messages,
            feedback,
            cancelled,
            f.replaces,
            replaced_by,
            date.fromisoformat(f.valid_until) if f.valid_until else None,
        )

    def _messages(self, number: str) -> tuple[list[MessageLine], list[FeedbackLine], str | None]:
        lines: list[MessageLine] = []
        feedback: list[FeedbackLine] = []
        cancelled = None
        for direction, kind, token, line in self._lines(number):
            lines.append(line)
            if line.status in ("rejected",) and direction == "in":
                continue
            payload = payload_of(token)
            if kind == "coo-cancellation":
                cancelled = cancellation_reason(payload) or cancelled
            elif kind == "feedback":
                fb = feedback_line(payload, line.message_id, direction, line.at)
                feedback += [fb] if fb else []
        return lines, feedback, cancelled

    def _lines(self, number: str) -> Iterator[tuple[str, str, bytes, MessageLine]]:
        for r in sorted(self._outbound.values(), key=lambda r: r.created_at):
            if r.certificate_number == number:
                yield (
                    "out",
                    r.kind.value,
                    r.token,
                    MessageLine(
                        "out",
                        r.kind.value,
                        r.message_id,
                        r.status,
                        r.attempts,
                        r.receipt_code,
                        r.receipt_text or "",
                        _at(r.created_at),
                        _at(r.updated_at),
                        r.correlation_id,
                    ),
                )
        for row, at in sorted(self._inbound.values(), key=lambda p: p[1]):
            if row.certificate_number == number and row.kind.value != "receipt":
                yield (
                    "in",
                    row.kind.value,
                    row.token,
                    MessageLine(
                        "in",
                        row.kind.value,
                        row.message_id,
                        row.status,
                        1,
                        row.code,
                        row.text,
                        _at(at),
                        _at(at),
                    ),
                )

    async def dashboard(self) -> Dashboard:
        by_state: dict[str, dict[str, int]] = {}
        for cert in self._certificates.values():
            states = by_state.setdefault(cert.role.value, {})
            states[cert.state.value] = states.get(cert.state.value, 0) + 1
        pending = [r.created_at for r in self._outbound.values() if r.status == "pending"]
        receipts = [at for row, at in self._inbound.values() if row.kind.value == "receipt"]
        return Dashboard(
            by_state,
            len(pending),
            _at(min(pending)) if pending else None,
            _at(max(receipts)) if receipts else None,
        )

    async def verify_reference(
        self, reference_number: str, reference_code: str
    ) -> PublicCertificate | None:
        for cert in sorted(self._certificates.values(), key=lambda c: c.role.value):
            f = self._facts(cert)
            if folded(f.reference_number or "") != folded(reference_number):
                continue
            if not code_matches(f.reference_code, reference_code):
                continue
            token = self._created_token(cert, cert.coo_message_id)
            if token is None:
                continue
            exporter = cert.role.value == "exporter"
            detail = self._detail(cert)
            return public_certificate(
                token,
                role=cert.role.value,
                state=cert.state.value,
                signed_by=self.own if exporter else self.partner,
                replaced_by=detail.replaced_by,
            )
        return None

    async def ping(self) -> None:
        """Always answers: the tables are in memory."""

    async def sent_message(self, message_id: str) -> SentMessage | None:
        r = self._outbound.get(message_id)
        if r is None:
            return None
        return SentMessage(
            r.message_id,
            r.kind.value,
            r.certificate_number,
            r.token,
            r.status,
            r.attempts,
            _at(r.created_at),
        )
