"""The aio-pika adapter: ``AmqpBroker`` implements ``ports.Broker`` and is the only code
that imports a broker library.

``link`` holds a connection and the error boundary, ``consumer`` batches deliveries and
decides ack or requeue, ``settle`` carries out that decision in one AMQP transaction.
"""

from eodes_node.adapters.amqp.broker import AmqpBroker
from eodes_node.adapters.amqp.consumer import AmqpConsumer, delivery_of
from eodes_node.adapters.amqp.link import BrokerLink
from eodes_node.adapters.amqp.settle import settle_batch

__all__ = ["AmqpBroker", "AmqpConsumer", "BrokerLink", "delivery_of", "settle_batch"]
