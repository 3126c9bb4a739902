"""Names of the exchanges and queues a node uses, in one place.

A node serves one partner. It consumes only from its own (local) broker: the local
systems' queues and its inbound queue, where the partner's node pushes envelopes. It
publishes envelopes to the partner's broker, on the partner's inbound exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INBOUND_EXCHANGE = "eodes.inbound"
QUEUE_TYPES = ("classic", "quorum")
DEFAULT_DELIVERY_LIMIT = 20
DEAD_SUFFIX = ".dead"


@dataclass(frozen=True, slots=True)
class QueueKind:
    """How every queue of the node is declared. The broker refuses a declaration whose
    arguments differ from the queue's (PRECONDITION_FAILED), so the node, ``submit``,
    ``broker-setup`` and the test helpers all take their arguments from here.

    Quorum queues are replicated across a cluster. Each queue but a ``.dead`` one counts
    deliveries: one returned more than ``delivery_limit`` times (a message that crashes
    every consumer it reaches) is dead-lettered by the broker into the queue's ``.dead``
    queue, beside what the node parks there itself. Dead-lettering stays at most once:
    at-least-once needs ``x-overflow: reject-publish``, whose rejections a transaction
    on a quorum queue hides (the commit succeeds: rabbitmq-server#8966). A leader election
    hides a publish the same way, so the node settles deliveries from quorum queues with
    publisher confirms, not transactions (``adapters.amqp.settle``)."""

    queue_type: str = "classic"
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT

    def __post_init__(self) -> None:
        if self.queue_type not in QUEUE_TYPES:
            raise ValueError(f"queue type {self.queue_type!r}: give one of {QUEUE_TYPES}")
        if self.delivery_limit < 1:
            raise ValueError(f"delivery limit {self.delivery_limit}: give 1 or more")

    def arguments(self, queue: str) -> dict[str, Any]:
        """The declaration arguments of ``queue``; none for a classic queue."""
        if self.queue_type == "classic":
            return {}
        if queue.endswith(DEAD_SUFFIX):
            return {"x-queue-type": "quorum"}
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": f"{queue}{DEAD_SUFFIX}",
        }


CLASSIC = QueueKind()


@dataclass(frozen=True, slots=True)
class Topology:
    own: str
    partner: str
    namespace: str = "eodes"

    @property
    def _p(self) -> str:
        return f"{self.namespace}.{self.partner.lower()}"

    @property
    def inbound_exchange(self) -> str:
        """Direct exchange on our broker; the partner publishes with routing key = its code."""
        return f"{self.namespace}.inbound"

    @property
    def inbound_queue(self) -> str:
        return f"{self._p}.inbound"

    @property
    def outbound_records(self) -> str:
        """The issuing system submits e-CO, replacement and cancellation records here, and
        its answers to the partner's verification requests."""
        return f"{self._p}.outbound.records"

    @property
    def outbound_feedback(self) -> str:
        """The clearance system submits its decisions and verification requests here."""
        return f"{self._p}.outbound.feedback"

    @property
    def clearance(self) -> str:
        """Verified certificates, their cancellations and verification responses, for the
        clearance system."""
        return f"{self._p}.clearance"

    @property
    def issuing(self) -> str:
        """Feedback decisions and verification requests from the partner, for the issuing
        system."""
        return f"{self._p}.issuing"

    @property
    def events(self) -> str:
        """Delivery events and errors (delivered, failed, record rejected, a verification
        request overdue) for local systems."""
        return f"{self._p}.events"

    def dead_letter(self, queue: str) -> str:
        return f"{queue}{DEAD_SUFFIX}"

    @property
    def routing_key_at_partner(self) -> str:
        """How our envelopes are routed on the partner's inbound exchange."""
        return self.own

    def local_queues(self) -> tuple[str, ...]:
        return (
            self.inbound_queue,
            self.outbound_records,
            self.outbound_feedback,
            self.clearance,
            self.issuing,
            self.events,
        )


# --- The AsyncAPI description of the same names -------------------------------------
# Addresses come from a Topology whose codes are placeholders, so the document names
# exactly what ``Topology`` makes the node declare; tests/e2e/test_asyncapi.py compares
# it with what a running node really declared on its vhost.

TEMPLATE = Topology(own="{OWN}", partner="{partner}")
ENVELOPE_KINDS = (
    "coo",
    "coo-replacement",
    "coo-cancellation",
    "receipt",
    "feedback",
    "verification-request",
    "verification-response",
)
_PARAMETERS = {"partner": {"description": "the partner's country code, lower case (e.g. cn)"}}
_LOCAL = [{"$ref": "#/servers/local"}]
_BINDING_VERSION = "0.3.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/messages/{name}"}


def _queue(address: str, description: str, messages: tuple[str, ...]) -> dict[str, Any]:
    """A durable, non-exclusive queue on the node's own broker, with its declaration
    arguments for each ``broker.queue_type`` (quorum: with the default delivery limit)."""
    channel: dict[str, Any] = {
        "address": address,
        "description": description,
        "servers": _LOCAL,
        "parameters": _PARAMETERS,
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": address,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                    "vhost": "{vhost}",
                },
                "bindingVersion": _BINDING_VERSION,
            }
        },
        "x-eodes-arguments": {kind: QueueKind(kind).arguments(address) for kind in QUEUE_TYPES},
    }
    if messages:
        channel["messages"] = {name: _ref(name) for name in messages}
    return channel


_LOCAL_QUEUES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "inbound",
        TEMPLATE.inbound_queue,
        "The partner's envelopes, as routed from eodes.inbound with routing key = the "
        "partner's country code in upper case. The node consumes here and answers each "
        "batch with one signed receipt on the partner's broker.",
        ENVELOPE_KINDS,
    ),
    (
        "outboundRecords",
        TEMPLATE.outbound_records,
        "The issuing system submits records to send. AMQP property type: coo (default), "
        "coo-replacement (an e-CO record with back_reference.kind = replaces), "
        "coo-cancellation (a cancellation record) or verification-response (the answer "
        "to a verification request the partner sent, naming it in correlation_id).",
        ("eco-record", "cancellation-record", "verification-response-record"),
    ),
    (
        "outboundFeedback",
        TEMPLATE.outbound_feedback,
        "The clearance system submits its decisions on certificates received from the "
        "partner, and its verification requests about them. AMQP property type: "
        "feedback (default) or verification-request.",
        ("feedback-record", "verification-request-record"),
    ),
    (
        "clearance",
        TEMPLATE.clearance,
        "For the clearance system, once each: verified certificates, replacements, "
        "cancellations and verification responses, as the verified canonical payload; "
        "headers x-eodes-sender, x-eodes-certificate, x-eodes-digest, and "
        "x-eodes-possible-duplicate: true on a copy published again under its first "
        "message id (deduplicate by message id).",
        ("coo", "coo-replacement", "coo-cancellation", "verification-response"),
    ),
    (
        "issuing",
        TEMPLATE.issuing,
        "For the issuing system, once each: feedback decisions and verification requests "
        "from the partner, in the same form as clearance.",
        ("feedback", "verification-request"),
    ),
    (
        "events",
        TEMPLATE.events,
        "Delivery events for the local systems; the messages one receipt settles share "
        "one event; overdue names verification requests whose reply due date passed "
        "unanswered. AMQP type: event.<event>; x-eodes-possible-duplicate as on "
        "clearance.",
        ("event",),
    ),
)
# The queues whose refusals the node dead-letters; it declares a .dead queue for every
# local queue, and publishes nothing to the other three.
_DEAD_LETTERED = frozenset({"inbound", "outboundRecords", "outboundFeedback"})


def _dead_channel(key: str, queue: str) -> dict[str, Any]:
    if key in _DEAD_LETTERED:
        text = (
            f"What the node refused from {queue}, byte for byte, with the reason in header "
            "x-eodes-reason; for operators."
        )
        return _queue(TEMPLATE.dead_letter(queue), text, ("dead-letter",))
    text = (
        f"Declared beside {queue} like every .dead queue; the node publishes nothing here "
        "(its hand-offs to the local systems are never refused)."
    )
    return _queue(TEMPLATE.dead_letter(queue), text, ())


def _inbound_exchange() -> dict[str, Any]:
    return {
        "address": TEMPLATE.inbound_exchange,
        "description": (
            "Direct exchange on each node's broker. The partner node publishes signed "
            "envelopes here with routing key = its own country code (upper case), "
            "persistent, mandatory, with publisher confirms; bound to "
            f"{TEMPLATE.inbound_queue} with routing key = the partner's code."
        ),
        "servers": [{"$ref": "#/servers/local"}, {"$ref": "#/servers/partner"}],
        "messages": {kind: _ref(kind) for kind in ENVELOPE_KINDS},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": TEMPLATE.inbound_exchange,
                    "type": "direct",
                    "durable": True,
                    "autoDelete": False,
                    "vhost": "{vhost}",
                },
                "bindingVersion": _BINDING_VERSION,
            }
        },
        "x-eodes-bindings": [
            {"queue": TEMPLATE.inbound_queue, "routingKey": "{PARTNER}"},
        ],
    }


def asyncapi_channels() -> tuple[dict[str, Any], dict[str, Any]]:
    """AsyncAPI 3.0 channels and operations of a node: every exchange, queue and binding
    it declares, with {partner} as a parameter and {vhost} from the server."""
    channels: dict[str, Any] = {"partnerInbound": _inbound_exchange()}
    for key, address, description, messages in _LOCAL_QUEUES:
        channels[key] = _queue(address, description, messages)
    for key, address, _, _ in _LOCAL_QUEUES:
        channels[f"{key}Dead"] = _dead_channel(key, address)
    return channels, _operations()


def _op(action: str, channel: str, summary: str, **amqp: Any) -> dict[str, Any]:
    op: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
    }
    if amqp:
        op["bindings"] = {"amqp": {**amqp, "bindingVersion": _BINDING_VERSION}}
    return op


def _operations() -> dict[str, Any]:
    persistent = {"deliveryMode": 2}
    ops = {
        "receiveFromPartner": _op(
            "receive",
            "inbound",
            "Verify, deduplicate, store, hand over locally, answer with a signed receipt.",
            ack=True,
        ),
        "sendToPartner": _op(
            "send",
            "partnerInbound",
            "Sign and push to the partner's broker (routing key = our country code); "
            "resend the same bytes under the same id until a receipt arrives or the retry "
            "budget is spent. Receipts go the same way and are not retried.",
            cc=["{OWN}"],
            mandatory=True,
            **persistent,
        ),
        "receiveRecords": _op(
            "receive", "outboundRecords", "Records and verification answers to send.", ack=True
        ),
        "receiveFeedback": _op(
            "receive",
            "outboundFeedback",
            "Decisions and verification requests to sign and send.",
            ack=True,
        ),
        "deliverToClearance": _op(
            "send", "clearance", "Hand verified messages to clearance.", **persistent
        ),
        "deliverToIssuing": _op(
            "send", "issuing", "Hand verified messages to issuing.", **persistent
        ),
        "reportEvents": _op(
            "send", "events", "Report deliveries, failures and overdue requests.", **persistent
        ),
    }
    for key in sorted(_DEAD_LETTERED):
        ops[f"deadLetter{key[0].upper()}{key[1:]}"] = _op(
            "send", f"{key}Dead", "Dead-letter what was refused, with the reason.", **persistent
        )
    return ops
