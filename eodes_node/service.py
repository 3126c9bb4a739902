"""The service layer: deliveries in, core decisions, effects out through the ports.

Each handler takes a batch of deliveries from one queue. It gathers the facts the core
needs in a few store reads, decides message by message (later messages of a batch see the
effects of earlier ones), commits everything the batch caused in one transaction, then
publishes with broker confirms. Only when it returns may the runtime ack the batch.
A handler raises only ``TransientError`` (retry the batch) or a bug; every problem with a
message itself is answered here: rejection receipt, dead letter, error event.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import structlog

from eodes_node.config import LimitsSection, RetrySection
from eodes_node.core.canonical import canonical_json
from eodes_node.core.decide import (
    CertFacts,
    Local,
    OutboundFacts,
    PriorInbound,
    Transition,
    applied,
    decide_inbound,
    decide_local_certificate,
    decide_local_feedback,
    decide_receipt,
    rejection_entry,
    retries_exhausted,
)
from eodes_node.core.envelope import Opened, open_envelope, seal
from eodes_node.core.jws import KeySet, PrivateKey, digest, sign_compact
from eodes_node.core.messages import (
    CooCancellation,
    CooIssued,
    CooReplacement,
    Feedback,
    FeedbackBody,
    Kind,
    MessageBase,
    Receipt,
    ReceiptEntry,
    certificate_number_of,
    issued_now,
    new_message_id,
)
from eodes_node.core.records import compose, parse_model
from eodes_node.core.state import Role
from eodes_node.errors import InvalidMessage, InvalidRecord, PeerError, Problem
from eodes_node.ports import (
    PARTNER,
    Clock,
    Delivery,
    Due,
    Facts,
    FactsQuery,
    InboundRow,
    NodeStore,
    OutboundRow,
    OutboundUpdate,
    Publication,
    Transport,
    UnitOfWork,
)
from eodes_node.topology import Topology

log = structlog.get_logger("eodes_node.service")

RECORD_KINDS = (Kind.COO, Kind.COO_REPLACEMENT, Kind.COO_CANCELLATION)
_RECORD_KIND_NAMES = frozenset(k.value for k in RECORD_KINDS)
_UUID_CHARS = frozenset("0123456789abcdef-")


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    own: str
    partner: str
    key: PrivateKey
    partner_keys: KeySet
    topology: Topology


def _looks_like_id(value: str | None) -> bool:
    return value is not None and len(value) == 36 and set(value) <= _UUID_CHARS


def _claimed_id(delivery: Delivery) -> str | None:
    """The message id the transport claims, if it has the form of one."""
    return delivery.message_id if _looks_like_id(delivery.message_id) else None


def _record_digest(body: Any) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _cert_key(message: MessageBase) -> tuple[str, str] | None:
    """The certificate a partner message concerns, seen from our side."""
    number = certificate_number_of(message)
    if number is None:
        return None
    role = Role.EXPORTER if isinstance(message, Feedback) else Role.IMPORTER
    return (role.value, number)


class NodeService:
    def __init__(
        self,
        identity: NodeIdentity,
        store: NodeStore,
        transport: Transport,
        clock: Clock,
        *,
        retry: RetrySection,
        limits: LimitsSection,
    ) -> None:
        self.id = identity
        self.store = store
        self.transport = transport
        self.clock = clock
        self.retry = retry
        self.limits = limits
        self.topology = identity.topology
        self._decide_lock = asyncio.Lock()
        self._background: set[asyncio.Task[int]] = set()
        self.flush_wanted = asyncio.Event()

    # --- shared effects ------------------------------------------------------------

    @staticmethod
    def _item(
        message_id: str,
        kind: str,
        certificate_number: str | None,
        code: str | None = None,
        text: str = "",
        problems: Sequence[Problem] = (),
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "message_id": message_id,
            "kind": kind,
            "certificate_number": certificate_number,
        }
        if code:
            item["code"] = code
        if text:
            item["text"] = text
        if problems:
            item["problems"] = [
                {"path": p.path, "rule": p.rule, "message": p.message} for p in problems
            ]
        return item

    def _event(
        self,
        unit: UnitOfWork,
        event: str,
        items: Sequence[dict[str, Any]],
        *,
        bound_to: str | None = None,
    ) -> None:
        """One event message per occasion; a receipt's deliveries share one event."""
        if not items:
            return
        body = {
            "event": event,
            "partner": self.id.partner,
            "at": issued_now(self.clock.now()).isoformat().replace("+00:00", "Z"),
            "items": list(items),
        }
        unit.publications.append(
            Publication(
                self.topology.events,
                orjson.dumps(body),
                new_message_id(),
                f"event.{event}",
                bound_to=bound_to,
            )
        )

    def _dead_letter(
        self, unit: UnitOfWork, queue: str, delivery: Delivery, reason: str, bound_to: str
    ) -> None:
        unit.publications.append(
            Publication(
                self.topology.dead_letter(queue),
                delivery.body,
                _claimed_id(delivery) or new_message_id(),
                delivery.kind or "unknown",
                {"x-eodes-reason": reason[:4000]},
                "application/octet-stream",
                bound_to,
            )
        )

    async def _decide_and_commit(
        self,
        decide: Callable[[Sequence[Delivery]], Awaitable[UnitOfWork]],
        batch: Sequence[Delivery],
    ) -> list[tuple[int, Publication]]:
        """Decide and commit a batch; publish what goes to the partner; return the local
        publications the runtime must publish in one broker transaction with the acks.

        Facts are read, decided on and committed under one lock, so two handlers never
        decide on the same certificate from the same stale state; publishing happens after,
        outside the lock, so broker round trips of different queues still overlap.
        """
        async with self._decide_lock:
            unit = await decide(batch)
            ids = await self.store.commit(unit) if unit else []
            again = await self.store.bound_unpublished(unit.reissue)
        items = list(zip(ids, unit.publications, strict=True))
        free = [(i, p) for i, p in items if p.bound_to is None]
        if free:
            # Committed to the outbox already, so the delivery may be acked before the
            # partner's broker confirms: publishing overlaps with settling.
            task = asyncio.create_task(self.publish_queued(free))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return [(i, p) for i, p in items if p.bound_to is not None] + [
            (q.id, q.publication) for q in again
        ]

    async def handle_inbound(self, batch: Sequence[Delivery]) -> list[tuple[int, Publication]]:
        return await self._decide_and_commit(self._decide_inbound, batch)

    async def handle_records(self, batch: Sequence[Delivery]) -> list[tuple[int, Publication]]:
        return await self._decide_and_commit(self._decide_records, batch)

    async def handle_feedback(self, batch: Sequence[Delivery]) -> list[tuple[int, Publication]]:
        return await self._decide_and_commit(self._decide_feedback, batch)

    async def published(self, ids: Sequence[int]) -> None:
        """Bound publications went out with their acks: make that durable soon."""
        await self.store.mark_published(ids)
        self.flush_wanted.set()

    async def finish_background(self, within: float) -> None:
        """Wait (bounded) for partner publications still in flight; the outbox has the rest."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=within)

    async def publish_queued(self, items: Sequence[tuple[int, Publication]]) -> int:
        """Publish outbox items concurrently (pipelined confirms); mark the confirmed ones."""

        async def one(item: tuple[int, Publication]) -> int | None:
            outbox_id, p = item
            try:
                if p.destination == PARTNER:
                    await self.transport.publish_partner(
                        p.body, message_id=p.message_id, kind=p.kind
                    )
                else:
                    await self.transport.publish_local(
                        p.destination,
                        p.body,
                        message_id=p.message_id,
                        kind=p.kind,
                        headers=p.headers,
                        content_type=p.content_type,
                    )
            except Exception as exc:  # noqa: BLE001 - kept in the outbox, relayed later
                log.warning(
                    "publish_deferred",
                    destination=p.destination,
                    message_id=p.message_id,
                    error=str(exc),
                )
                return None
            return outbox_id

        results = await asyncio.gather(*(one(item) for item in items))
        done = [r for r in results if r is not None]
        await self.store.mark_published(done)
        await self.store.release([i for (i, _), r in zip(items, results, strict=True) if r is None])
        return len(done)

    async def relay_outbox(self, limit: int = 500) -> int:
        """Publish what a crash or an outage left in the outbox; returns how many remain."""
        await self.store.flush_published()
        queued = await self.store.unpublished(limit)
        if not queued:
            return 0
        published = await self.publish_queued([(q.id, q.publication) for q in queued])
        if published:
            log.info("outbox_relayed", published=published)
        return len(queued) - published

    # --- partner messages ------------------------------------------------------------

    async def _decide_inbound(self, batch: Sequence[Delivery]) -> UnitOfWork:
        me = self.id
        now = self.clock.now()
        unit = UnitOfWork()
        entries: list[ReceiptEntry] = []
        opened: list[tuple[Delivery, Opened]] = []
        max_future_skew = _seconds(self.limits.max_future_skew_s)
        max_age = _seconds(self.limits.max_age_s)
        for delivery in batch:
            try:
                opened.append(
                    (
                        delivery,
                        open_envelope(
                            delivery.body,
                            me.partner_keys,
                            receiver=me.own,
                            now=now,
                            max_bytes=self.limits.max_message_bytes,
                            max_future_skew=max_future_skew,
                            max_age=max_age,
                        ),
                    )
                )
            except PeerError as exc:
                self._refuse_unverified(unit, entries, delivery, exc)

        receipts = [(d, o) for d, o in opened if isinstance(o.message, Receipt)]
        others = [(d, o) for d, o in opened if not isinstance(o.message, Receipt)]
        keys = {k for _, o in others if (k := _cert_key(o.message)) is not None}
        keys |= {
            (Role.IMPORTER.value, ref.certificate_number)
            for _, o in others
            if isinstance(o.message, CooReplacement)
            and (ref := o.message.certificate.back_reference) is not None
        }
        facts = await self.store.facts(
            FactsQuery(
                sender=me.partner,
                message_ids=tuple(o.message.message_id for _, o in opened),
                certificates=tuple(keys),
                outbound_ids=tuple(
                    e.message_id
                    for _, o in receipts
                    if isinstance(o.message, Receipt)
                    for e in o.message.entries
                ),
            )
        )
        priors, certs = facts.priors, facts.certificates
        receipt_id = new_message_id()
        resend: set[str] = set()

        for delivery, o in others:
            m = o.message
            number = certificate_number_of(m)
            binding = self._binding(m.message_id)
            with structlog.contextvars.bound_contextvars(
                message_id=m.message_id, certificate_number=number, partner=me.partner
            ):
                prior = priors.get(m.message_id)
                in_this_batch = prior is not None and prior.receipt_id == receipt_id
                if in_this_batch and prior is not None and prior.digest == o.digest:
                    continue  # a copy within this batch: this batch's receipt answers it
                try:
                    key = _cert_key(m)
                    referenced = None
                    if isinstance(m, CooReplacement) and m.certificate.back_reference:
                        referenced = certs.get(
                            (Role.IMPORTER.value, m.certificate.back_reference.certificate_number)
                        )
                    decision = decide_inbound(
                        o,
                        prior=prior,
                        certificate=certs.get(key) if key else None,
                        referenced=referenced,
                    )
                except InvalidMessage as exc:
                    entry = rejection_entry(
                        m.message_id, o.kind, o.digest, exc.code, exc.reason, number
                    )
                    log.warning(
                        "partner_message_rejected",
                        kind=o.kind.value,
                        code=exc.code,
                        reason=exc.reason,
                    )
                    if prior is None:
                        unit.inbound.append(self._inbound_row(o, "rejected", entry, receipt_id))
                        priors[m.message_id] = PriorInbound(o.digest, entry, receipt_id)
                    entries.append(entry)
                    self._dead_letter(
                        unit,
                        self.topology.inbound_queue,
                        delivery,
                        f"{exc.code}: {exc.reason}",
                        binding,
                    )
                    continue
                if decision.duplicate:
                    log.info(
                        "duplicate_received", kind=o.kind.value, redelivered=delivery.redelivered
                    )
                    if prior is not None and prior.receipt_id:
                        resend.add(prior.receipt_id)
                    if delivery.redelivered:
                        unit.reissue.append(binding)
                    continue
                assert decision.entry is not None
                priors[m.message_id] = PriorInbound(o.digest, decision.entry, receipt_id)
                entries.append(decision.entry)
                unit.inbound.append(self._inbound_row(o, "accepted", decision.entry, receipt_id))
                unit.transitions.extend(decision.transitions)
                applied(certs, list(decision.transitions))
                if decision.deliver_to is not None:
                    self._deliver(unit, decision.deliver_to, o, number, binding)
                log.info(
                    "partner_message_accepted", kind=o.kind.value, delivered_to=decision.deliver_to
                )

        await self._apply_receipts(unit, receipts, priors, facts)

        if entries:
            self._answer(unit, receipt_id, entries, now)
        if resend:
            tokens = await self.store.tokens(resend)
            for rid, token in tokens.items():
                unit.publications.append(Publication(PARTNER, token, rid, Kind.RECEIPT.value))
        return unit

    def _refuse_unverified(
        self, unit: UnitOfWork, entries: list[ReceiptEntry], delivery: Delivery, exc: PeerError
    ) -> None:
        """A message that failed verification: dead-letter it, and tell the partner why.

        Nothing in it can be trusted, so the rejection names only the id and type the
        transport claimed, and the digest of the exact bytes we received.
        """
        with structlog.contextvars.bound_contextvars(
            message_id=delivery.message_id, certificate_number=None, partner=self.id.partner
        ):
            log.warning(
                "partner_message_refused", code=exc.code, reason=exc.reason, size=len(delivery.body)
            )
            self._dead_letter(
                unit,
                self.topology.inbound_queue,
                delivery,
                f"{exc.code}: {exc.reason}",
                f"raw:{digest(delivery.body)}",
            )
            kind = delivery.kind if delivery.kind in Kind._value2member_map_ else None
            if _looks_like_id(delivery.message_id) and kind and kind != Kind.RECEIPT.value:
                assert delivery.message_id is not None
                entries.append(
                    rejection_entry(
                        delivery.message_id,
                        Kind(kind),
                        digest(delivery.body.strip()),
                        exc.code,
                        exc.reason,
                    )
                )

    def _inbound_row(
        self, o: Opened, status: str, entry: ReceiptEntry | None, receipt_id: str | None
    ) -> InboundRow:
        return InboundRow(
            sender=self.id.partner,
            message_id=o.message.message_id,
            kind=o.kind,
            digest=o.digest,
            token=o.token,
            status=status,
            code=entry.code.value if entry and entry.code else None,
            text=entry.text if entry else "",
            certificate_number=certificate_number_of(o.message),
            receipt_entry=entry.model_dump_json(exclude_none=True) if entry else None,
            receipt_id=receipt_id if entry else None,
        )

    def _binding(self, message_id: str) -> str:
        return f"in:{self.id.partner}:{message_id}"

    def _deliver(
        self, unit: UnitOfWork, to: Local, o: Opened, number: str | None, bound_to: str
    ) -> None:
        queue = self.topology.clearance if to is Local.CLEARANCE else self.topology.issuing
        headers = {"x-eodes-sender": self.id.partner, "x-eodes-digest": o.digest}
        if number:
            headers["x-eodes-certificate"] = number
        unit.publications.append(
            Publication(
                queue,
                o.payload,
                o.message.message_id,
                o.kind.value,
                headers,
                bound_to=bound_to,
            )
        )

    def _answer(
        self, unit: UnitOfWork, receipt_id: str, entries: list[ReceiptEntry], now: Any
    ) -> None:
        receipt = Receipt(
            message_id=receipt_id,
            sender=self.id.own,
            receiver=self.id.partner,
            issued_at=issued_now(now),
            entries=tuple(entries),
        )
        token = seal(receipt, self.id.key)
        unit.outbound.append(
            OutboundRow(
                receipt_id,
                Kind.RECEIPT,
                None,
                None,
                token,
                None,
                None,
                attempts=1,
                next_attempt_at=None,
                status="sent",
            )
        )
        unit.publications.append(Publication(PARTNER, token, receipt_id, Kind.RECEIPT.value))

    async def _apply_receipts(
        self,
        unit: UnitOfWork,
        receipts: list[tuple[Delivery, Opened]],
        priors: dict[str, Any],
        facts: Facts,
    ) -> None:
        fresh = [o for _, o in receipts if o.message.message_id not in priors]
        unit.reissue.extend(
            self._binding(o.message.message_id)
            for d, o in receipts
            if o.message.message_id in priors and d.redelivered
        )
        if not fresh:
            return
        sent = facts.outbound
        by_number = {
            number: known
            for (role, number), known in facts.certificates.items()
            if role == Role.EXPORTER.value
        }
        stored: set[str] = set()
        for o in fresh:
            receipt = o.message
            assert isinstance(receipt, Receipt)
            if receipt.message_id in stored:
                continue
            stored.add(receipt.message_id)
            unit.inbound.append(self._inbound_row(o, "accepted", None, None))
            settled: dict[str, list[dict[str, Any]]] = {"delivered": [], "rejected": []}
            for outcome in decide_receipt(receipt, sent, by_number):
                mine = sent[outcome.message_id]
                with structlog.contextvars.bound_contextvars(
                    message_id=outcome.message_id,
                    certificate_number=mine.certificate_number,
                    partner=self.id.partner,
                ):
                    if mine.status == outcome.status:
                        continue
                    sent[outcome.message_id] = OutboundFacts(
                        mine.message_id, mine.kind, mine.certificate_number, outcome.status
                    )
                    log.info(
                        "receipt_received",
                        status=outcome.status,
                        code=outcome.code,
                        was=mine.status,
                    )
                    unit.outbound_updates.append(
                        OutboundUpdate(
                            outcome.message_id, outcome.status, outcome.code, outcome.text
                        )
                    )
                    unit.transitions.extend(outcome.transitions)
                    for t in outcome.transitions:
                        by_number[t.number] = CertFacts(
                            t.number, t.role, t.after, by_number[t.number].coo_message_id
                        )
                    if mine.kind is not Kind.RECEIPT:
                        settled[outcome.status].append(
                            self._item(
                                outcome.message_id,
                                mine.kind.value,
                                mine.certificate_number,
                                outcome.code,
                                outcome.text,
                            )
                        )
            for status, items in settled.items():
                self._event(unit, status, items, bound_to=self._binding(receipt.message_id))

    # --- local records ---------------------------------------------------------------

    def _refuse_record(
        self,
        unit: UnitOfWork,
        queue: str,
        delivery: Delivery,
        kind: str,
        problems: Sequence[Problem],
        number: str | None = None,
    ) -> None:
        text = "; ".join(str(p) for p in problems)
        with structlog.contextvars.bound_contextvars(
            message_id=delivery.message_id, certificate_number=number, partner=self.id.partner
        ):
            log.warning("local_record_rejected", kind=kind, problems=text)
        # A rejected record leaves no state behind: if it comes back after a crash it is
        # simply rejected again, so its binding only has to keep it out of the relay.
        binding = f"record:{digest(delivery.body)}"
        self._dead_letter(unit, queue, delivery, text, binding)
        item = self._item(delivery.message_id or "", kind, number, text=text, problems=problems)
        self._event(unit, "record_rejected", [item], bound_to=binding)

    def _parse_body(self, delivery: Delivery) -> Any:
        if len(delivery.body) > self.limits.max_message_bytes:
            raise InvalidRecord(
                [Problem("", "too_large", f"record exceeds {self.limits.max_message_bytes} bytes")]
            )
        try:
            return orjson.loads(delivery.body)
        except orjson.JSONDecodeError as exc:
            raise InvalidRecord([Problem("", "json_invalid", f"not valid JSON: {exc}")]) from None

    def _send(
        self,
        unit: UnitOfWork,
        message: MessageBase,
        kind: Kind,
        number: str,
        local_key: str,
        record_digest: str,
        moves: Iterable[Transition],
        payload: bytes | None = None,
    ) -> None:
        if payload is None:
            token = seal(message, self.id.key)
        else:
            token = sign_compact(payload, kind.typ, self.id.key)
        first_retry = self.clock.now().timestamp() + self.retry.first_after_s
        unit.outbound.append(
            OutboundRow(
                message.message_id,
                kind,
                number,
                message.correlation_id,
                token,
                local_key,
                record_digest,
                attempts=1,
                next_attempt_at=first_retry,
            )
        )
        unit.transitions.extend(moves)
        unit.publications.append(Publication(PARTNER, token, message.message_id, kind.value))

    async def _decide_records(self, batch: Sequence[Delivery]) -> UnitOfWork:
        """e-CO, replacement and cancellation records from the issuing system."""
        queue = self.topology.outbound_records
        unit = UnitOfWork()
        now = issued_now(self.clock.now())
        ready: list[tuple[Delivery, Kind, MessageBase, str, str]] = []
        payloads: dict[str, bytes] = {}
        for delivery in batch:
            kind_name = delivery.kind or Kind.COO.value
            try:
                if kind_name not in _RECORD_KIND_NAMES:
                    raise InvalidRecord(
                        [
                            Problem(
                                "",
                                "unknown_type",
                                f"AMQP type {kind_name!r} is not one of "
                                + ", ".join(k.value for k in RECORD_KINDS),
                            )
                        ]
                    )
                kind = Kind(kind_name)
                body = self._parse_body(delivery)
                composed = compose(
                    kind, body, sender=self.id.own, receiver=self.id.partner, issued_at=now
                )
            except InvalidRecord as exc:
                self._refuse_record(unit, queue, delivery, kind_name, exc.problems)
                continue
            message = composed.message
            payloads[message.message_id] = composed.payload
            number = certificate_number_of(message) or ""
            ready.append((delivery, kind, message, number, _record_digest(body)))

        references = {
            (Role.EXPORTER.value, ref.certificate_number)
            for _, _, m, _, _ in ready
            if isinstance(m, CooReplacement) and (ref := m.certificate.back_reference) is not None
        }
        facts = await self.store.facts(
            FactsQuery(
                local_keys=tuple(f"{k.value}:{n}" for _, k, _, n, _ in ready),
                certificates=tuple(
                    {(Role.EXPORTER.value, n) for _, _, _, n, _ in ready} | references
                ),
            )
        )
        known, certs = facts.local_keys, facts.certificates
        for delivery, kind, message, number, record_digest in ready:
            local_key = f"{kind.value}:{number}"
            with structlog.contextvars.bound_contextvars(
                message_id=message.message_id,
                certificate_number=number,
                partner=self.id.partner,
            ):
                try:
                    if local_key in known:
                        if known[local_key][1] == record_digest:
                            log.info(
                                "local_duplicate_ignored",
                                kind=kind.value,
                                first_message_id=known[local_key][0],
                            )
                            continue
                        raise InvalidRecord(
                            [
                                Problem(
                                    "header.certificate_number",
                                    "number_in_use",
                                    f"{kind.value} for {number} was already submitted with other "
                                    "content; a correction travels as coo-replacement",
                                )
                            ]
                        )
                    assert isinstance(message, CooIssued | CooReplacement | CooCancellation)
                    referenced = None
                    if isinstance(message, CooReplacement) and message.certificate.back_reference:
                        referenced = certs.get(
                            (
                                Role.EXPORTER.value,
                                message.certificate.back_reference.certificate_number,
                            )
                        )
                    moves = decide_local_certificate(
                        message, certs.get((Role.EXPORTER.value, number)), referenced
                    )
                except InvalidRecord as exc:
                    self._refuse_record(unit, queue, delivery, kind.value, exc.problems, number)
                    continue
                applied(certs, moves)
                known[local_key] = (message.message_id, record_digest)
                self._send(
                    unit,
                    message,
                    kind,
                    number,
                    local_key,
                    record_digest,
                    moves,
                    payloads[message.message_id],
                )
                log.info("record_accepted", kind=kind.value)
        return unit

    async def _decide_feedback(self, batch: Sequence[Delivery]) -> UnitOfWork:
        """Decisions from the clearance system on certificates received from the partner."""
        queue = self.topology.outbound_feedback
        unit = UnitOfWork()
        now = issued_now(self.clock.now())
        ready: list[tuple[Delivery, FeedbackBody, str, str]] = []
        for delivery in batch:
            try:
                body = self._parse_body(delivery)
                feedback = parse_model(FeedbackBody, orjson.dumps(body))
            except InvalidRecord as exc:
                self._refuse_record(unit, queue, delivery, Kind.FEEDBACK.value, exc.problems)
                continue
            ready.append((delivery, feedback, feedback.certificate_number, _record_digest(body)))
        facts = await self.store.facts(
            FactsQuery(
                local_keys=tuple(f"feedback:{n}" for _, _, n, _ in ready),
                certificates=tuple({(Role.IMPORTER.value, n) for _, _, n, _ in ready}),
            )
        )
        known, certs = facts.local_keys, facts.certificates
        for delivery, feedback, number, record_digest in ready:
            local_key = f"feedback:{number}"
            message_id = new_message_id()
            with structlog.contextvars.bound_contextvars(
                message_id=message_id, certificate_number=number, partner=self.id.partner
            ):
                if known.get(local_key, ("", ""))[1] == record_digest:
                    log.info("local_duplicate_ignored", kind="feedback")
                    continue
                try:
                    cert = certs.get((Role.IMPORTER.value, number))
                    move = decide_local_feedback(feedback, cert, message_id)
                except InvalidRecord as exc:
                    self._refuse_record(
                        unit, queue, delivery, Kind.FEEDBACK.value, exc.problems, number
                    )
                    continue
                assert cert is not None
                message = Feedback(
                    message_id=message_id,
                    sender=self.id.own,
                    receiver=self.id.partner,
                    issued_at=now,
                    correlation_id=cert.coo_message_id,
                    feedback=feedback,
                )
                applied(certs, [move])
                known[local_key] = (message_id, record_digest)
                self._send(unit, message, Kind.FEEDBACK, number, local_key, record_digest, [move])
                log.info("feedback_accepted", decision=feedback.decision.value)
        return unit

    # --- retries ---------------------------------------------------------------------

    def backoff_s(self, attempts: int) -> float:
        delay = self.retry.first_after_s * self.retry.multiplier ** max(attempts - 1, 0)
        return float(min(delay, self.retry.max_interval_s))

    async def resend_due(self, limit: int = 200) -> float | None:
        """Resend what has no receipt yet, or mark it failed; returns when next to look."""
        now = self.clock.now().timestamp()
        async with self._decide_lock:
            due = await self.store.due(now, limit)
            exhausted = [d for d in due if d.attempts >= self.retry.max_attempts]
            failures = await self._decide_failures(exhausted) if exhausted else UnitOfWork()
            ids = await self.store.commit(failures) if failures else []
        if ids:
            await self.publish_queued(list(zip(ids, failures.publications, strict=True)))
        resend = [d for d in due if d.attempts < self.retry.max_attempts]

        async def attempt(d: Due) -> None:
            try:
                await self.transport.publish_partner(
                    d.token, message_id=d.message_id, kind=d.kind.value
                )
                log.info("resent", message_id=d.message_id, attempt=d.attempts + 1)
            except Exception as exc:  # noqa: BLE001 - the attempt counts either way
                log.warning("resend_failed", message_id=d.message_id, error=str(exc))

        await asyncio.gather(*(attempt(d) for d in resend))
        if resend:
            # Guarded by status = 'pending' in the store: a receipt that came meanwhile wins.
            await self.store.commit(
                UnitOfWork(
                    outbound_updates=[
                        OutboundUpdate(
                            d.message_id,
                            "pending",
                            attempts=d.attempts + 1,
                            next_attempt_at=now + self.backoff_s(d.attempts + 1),
                        )
                        for d in resend
                    ]
                )
            )
        if len(due) == limit:
            return now
        return await self.store.next_due_at()

    async def _decide_failures(self, exhausted: Sequence[Due]) -> UnitOfWork:
        unit = UnitOfWork()
        failed: list[dict[str, Any]] = []
        certs = (
            await self.store.facts(
                FactsQuery(
                    certificates=tuple(
                        (Role.EXPORTER.value, d.certificate_number)
                        for d in exhausted
                        if d.certificate_number
                    )
                )
            )
        ).certificates
        for d in exhausted:
            with structlog.contextvars.bound_contextvars(
                message_id=d.message_id,
                certificate_number=d.certificate_number,
                partner=self.id.partner,
            ):
                text = f"no receipt after {d.attempts} attempts"
                log.error("delivery_failed", kind=d.kind.value, attempts=d.attempts)
                unit.outbound_updates.append(
                    OutboundUpdate(d.message_id, "failed", "RETRIES_EXHAUSTED", text)
                )
                move = retries_exhausted(
                    certs.get((Role.EXPORTER.value, d.certificate_number or "")), d.message_id
                )
                if move is not None:
                    unit.transitions.append(move)
                failed.append(
                    self._item(
                        d.message_id, d.kind.value, d.certificate_number, "RETRIES_EXHAUSTED", text
                    )
                )
        self._event(unit, "failed", failed)
        return unit


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
