"""Names of the exchanges and queues a node uses, in one place.

A node serves one partner. It consumes only from its own (local) broker: the local
systems' queues and its inbound queue, where the partner's node pushes envelopes. It
publishes envelopes to the partner's broker, on the partner's inbound exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INBOUND_EXCHANGE = "eodes.inbound"


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
        """The issuing system submits e-CO, replacement and cancellation records here."""
        return f"{self._p}.outbound.records"

    @property
    def outbound_feedback(self) -> str:
        """The clearance system submits its decisions here."""
        return f"{self._p}.outbound.feedback"

    @property
    def clearance(self) -> str:
        """Verified certificates and their cancellations, for the clearance system."""
        return f"{self._p}.clearance"

    @property
    def issuing(self) -> str:
        """Feedback decisions from the partner, for the issuing system."""
        return f"{self._p}.issuing"

    @property
    def events(self) -> str:
        """Delivery events and errors (delivered, failed, record rejected) for local systems."""
        return f"{self._p}.events"

    def dead_letter(self, queue: str) -> str:
        return f"{queue}.dead"

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


def asyncapi_channels() -> tuple[dict[str, Any], dict[str, Any]]:
    """AsyncAPI 3.0 channels and operations of a node, with {partner} as a parameter."""
    partner_param = {"partner": {"description": "partner country code, lower case (e.g. cn)"}}

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/messages/{name}"}

    envelope_kinds = (
        "coo",
        "coo-replacement",
        "coo-cancellation",
        "receipt",
        "feedback",
        "verification-request",
        "verification-response",
    )
    channels: dict[str, Any] = {
        "partnerInbound": {
            "address": INBOUND_EXCHANGE,
            "description": (
                "Direct exchange on each node's broker. The partner node publishes signed "
                "envelopes here with routing key = its own country code (upper case), "
                "persistent, mandatory, with publisher confirms. Bound to "
                "eodes.{partner}.inbound."
            ),
            "messages": {k: ref(k) for k in envelope_kinds},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": INBOUND_EXCHANGE,
                        "type": "direct",
                        "durable": True,
                        "vhost": "/",
                    },
                }
            },
        },
        "outboundRecords": {
            "address": "eodes.{partner}.outbound.records",
            "parameters": partner_param,
            "description": (
                "The issuing system submits records to send. AMQP property type: coo "
                "(default), coo-replacement or coo-cancellation."
            ),
            "messages": {
                "eco-record": ref("eco-record"),
                "cancellation-record": ref("cancellation-record"),
            },
        },
        "outboundFeedback": {
            "address": "eodes.{partner}.outbound.feedback",
            "parameters": partner_param,
            "description": "The clearance system submits decisions on received certificates.",
            "messages": {"feedback-record": ref("feedback-record")},
        },
        "clearance": {
            "address": "eodes.{partner}.clearance",
            "parameters": partner_param,
            "description": "Verified certificates, replacements and cancellations, once each.",
            "messages": {k: ref(k) for k in ("coo", "coo-replacement", "coo-cancellation")},
        },
        "issuing": {
            "address": "eodes.{partner}.issuing",
            "parameters": partner_param,
            "description": "Feedback decisions from the partner's customs, once each.",
            "messages": {"feedback": ref("feedback")},
        },
        "events": {
            "address": "eodes.{partner}.events",
            "parameters": partner_param,
            "description": (
                "Delivery events for the local systems, JSON {event, partner, at, items}: "
                "event = delivered | rejected | failed | record_rejected; each item has "
                "message_id, kind, certificate_number and, where they apply, code, text and "
                "problems. The messages one receipt settles share one event. AMQP type: "
                "event.<event>."
            ),
        },
        "deadLetters": {
            "address": "eodes.{partner}.{queue}.dead",
            "parameters": {
                **partner_param,
                "queue": {"description": "inbound, outbound.records or outbound.feedback"},
            },
            "description": (
                "What a node refused, byte for byte, with the reason in header x-eodes-reason."
            ),
        },
    }
    operations: dict[str, Any] = {
        "receiveFromPartner": {
            "action": "receive",
            "channel": {"$ref": "#/channels/partnerInbound"},
            "summary": "Verify, store, deliver locally, answer with a signed receipt.",
        },
        "sendToPartner": {
            "action": "send",
            "channel": {"$ref": "#/channels/partnerInbound"},
            "summary": "Sign and push to the partner's broker; resend with the same id until "
            "a receipt arrives or the retry budget is spent.",
        },
        "receiveRecords": {"action": "receive", "channel": {"$ref": "#/channels/outboundRecords"}},
        "receiveFeedback": {
            "action": "receive",
            "channel": {"$ref": "#/channels/outboundFeedback"},
        },
        "deliverToClearance": {"action": "send", "channel": {"$ref": "#/channels/clearance"}},
        "deliverToIssuing": {"action": "send", "channel": {"$ref": "#/channels/issuing"}},
        "reportEvents": {"action": "send", "channel": {"$ref": "#/channels/events"}},
        "deadLetter": {"action": "send", "channel": {"$ref": "#/channels/deadLetters"}},
    }
    return channels, operations
