"""The aio-pika adapter: ``AmqpBroker`` implements ``ports.Broker`` and is the only code
that imports a broker library.

``link`` holds a connection and the error boundary, ``consumer`` batches deliveries and
decides ack or requeue, ``settle`` carries out that decision in one AMQP transaction,
after ``probe`` has checked that every queue it hands off to exists; ``poison`` is what a
message the handler keeps failing on leaves behind; ``handshake`` says why a broker
refused a link's TLS.
"""

from eodes_node.adapters.amqp.broker import AmqpBroker
from eodes_node.adapters.amqp.calls import broker_errors
from eodes_node.adapters.amqp.consumer import AmqpConsumer, delivery_of
from eodes_node.adapters.amqp.link import BrokerLink
from eodes_node.adapters.amqp.probe import QueueProbe
from eodes_node.adapters.amqp.settle import Outcome, Result, settle_batch

__all__ = [
    "AmqpBroker",
    "AmqpConsumer",
    "BrokerLink",
    "Outcome",
    "QueueProbe",
    "Result",
    "broker_errors",
    "delivery_of",
    "settle_batch",
]
