"""Declaring one of the node's queues with the configured arguments, and the one line an
operator reads when the queue already exists with others.

RabbitMQ refuses such a declaration with PRECONDITION_FAILED ("inequivalent arg") and
closes the channel. No retry cures it: the configuration and the broker disagree, so it is
``BrokerRefused`` and the node stops at start-up. aiormq does not always keep the broker's
reply text (a channel closed under a pending call reports only that); the line then says
what the configuration asks for, and that the queue has something else.
"""

from __future__ import annotations

import re
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractQueue

from eodes_node.adapters.amqp.calls import broker_errors
from eodes_node.errors import BrokerRefused
from eodes_node.topology import QueueKind

__all__ = ["declare_queue", "mismatch"]

PRECONDITION_FAILED = 406
_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)' for queue '[^']*' in vhost '[^']*': "
    r"received (?P<asked>.+?) but current is (?P<has>.+?)\"?$"
)
_VALUE = re.compile(r"^the value (?P<value>.+) of type '[^']+'$")


def _readable(value: str) -> str:
    """A RabbitMQ rendering of an argument (``the value 'quorum' of type 'longstr'``,
    ``none``) as an operator reads it."""
    found = _VALUE.match(value.strip())
    if found:
        return found["value"]
    return "not set" if value.strip() == "none" else value.strip()


def _settings(kind: QueueKind) -> str:
    text = f'broker.queue_type = "{kind.queue_type}"'
    return f"{text}, broker.delivery_limit = {kind.delivery_limit}" if kind.arguments("q") else text


def _wanted(arguments: dict[str, Any]) -> str:
    if not arguments:
        return "no arguments (a classic queue)"
    return ", ".join(f"{key} = {value!r}" for key, value in arguments.items())


def mismatch(queue: str, kind: QueueKind, reply: str | None) -> BrokerRefused:
    """The one line for ``queue`` existing with other arguments than ``kind`` gives it."""
    fix = (
        "drain and delete the queue so the node declares it anew, or set "
        "broker.queue_type (and broker.delivery_limit) to what the broker has"
    )
    found = _INEQUIVALENT.search(reply or "")
    if found is not None:
        return BrokerRefused(
            f"queue {queue} exists on the broker with {found['arg']} = "
            f"{_readable(found['has'])}, but the configuration ({_settings(kind)}) declares "
            f"it with {found['arg']} = {_readable(found['asked'])}: {fix}"
        )
    return BrokerRefused(
        f"queue {queue} exists on the broker with other arguments than the configuration "
        f"({_settings(kind)}) declares it with, {_wanted(kind.arguments(queue))}: {fix}"
    )


def _precondition_reply(exc: BaseException) -> str | None:
    """The broker's reply text when ``exc`` is its PRECONDITION_FAILED, "" when the text
    was lost; None for any other failure."""
    if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
        return str(exc.args[0]) if exc.args else ""
    text = " ".join(str(arg) for arg in getattr(exc, "args", ()))
    if "PRECONDITION_FAILED" in text or (
        isinstance(exc, aiormq.exceptions.ChannelClosed) and PRECONDITION_FAILED in exc.args
    ):
        return text
    return None


async def declare_queue(
    channel: AbstractChannel, queue: str, kind: QueueKind, *, timeout_s: float, what: str
) -> AbstractQueue:
    """Declare ``queue`` durable with ``kind``'s arguments; ``BrokerRefused`` with one line
    when it exists with others, ``BrokerUnavailable`` (naming ``what``) for a link failure."""
    arguments = kind.arguments(queue) or None
    with broker_errors(what):
        try:
            return await channel.declare_queue(
                queue, durable=True, arguments=arguments, timeout=timeout_s
            )
        except aiormq.exceptions.AMQPError as exc:
            reply = _precondition_reply(exc)
            if reply is None:
                raise
            raise mismatch(queue, kind, reply) from None
