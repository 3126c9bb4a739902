"""Which TLS failures stop a node as a configuration error, and which are retried: a
broker or load balancer that is only starting must not end a node for good."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from eodes_node.adapters.amqp.handshake import _explained
from eodes_node.broker_tls import LinkTls

TLS = LinkTls("local", Path("ca.pem"), Path("kr.pem"), Path("kr.key"), "mq.kr.example", "1.2")


def alert(name: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {name}] tlsv1 alert")
    error.reason = name
    return error


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("TLSV1_ALERT_CERTIFICATE_EXPIRED", "it has expired"),
        ("TLSV1_ALERT_UNKNOWN_CA", "not signed by a CA the broker trusts"),
        ("TLSV1_ALERT_PROTOCOL_VERSION", "speaks no TLS version we allow"),
        ("WRONG_VERSION_NUMBER", "does not speak TLS"),
    ],
)
def test_a_refusal_our_configuration_causes_is_named(reason: str, said: str) -> None:
    refused = _explained("the broker at amqps://mq", 5671, TLS, alert(reason))
    assert refused is not None
    assert said in str(refused)


@pytest.mark.parametrize(
    "reason",
    ["TLSV1_ALERT_INTERNAL_ERROR", "TLSV1_ALERT_DECODE_ERROR", "UNEXPECTED_EOF_WHILE_READING"],
)
def test_other_tls_trouble_is_the_brokers_and_is_retried(reason: str) -> None:
    assert _explained("the broker at amqps://mq", 5671, TLS, alert(reason)) is None
