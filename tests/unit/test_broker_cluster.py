"""Broker high availability, without a broker: the queue arguments every declaration uses,
the [broker] settings for a cluster, and the one line a mismatched queue is refused with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aio_pika import RobustConnection

from eodes_node.adapters.amqp.cluster import ATTEMPT, ClusterConnection
from eodes_node.adapters.amqp.declare import mismatch
from eodes_node.config import load_config
from eodes_node.errors import BrokerRefused, ConfigError
from eodes_node.provision import definitions, link_access
from eodes_node.rabbitmqctl import listed_arguments
from eodes_node.topology import QueueKind, Topology

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
QUORUM_DOOR = {
    "x-queue-type": "quorum",
    "x-delivery-limit": 7,
    "x-dead-letter-exchange": "",
    "x-dead-letter-routing-key": "eodes.cn.inbound.dead",
}


def node_toml(tmp_path: Path, broker: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(
        f"""
[node]
country = "KR"
partner = "CN"
[broker]
{broker}
[keys]
private_key = "kr.key.pem"
partner_jwks = "cn.jwks.json"
[store]
url = "sqlite:///node.db"
"""
    )
    return path


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


PARTNER = 'partner_url = "amqp://cn-peer:x@cn.example/eodes-cn"'
MEMBERS = '["amqp://kr-node@r1.example/eodes-kr", "amqp://kr-node@r2.example/eodes-kr"]'


# --- queue arguments --------------------------------------------------------------------


def test_classic_queues_are_declared_without_arguments_as_before() -> None:
    t = Topology("KR", "CN")
    for queue in (*t.local_queues(), *(t.dead_letter(q) for q in t.local_queues())):
        assert QueueKind().arguments(queue) == {}


def test_a_quorum_queue_counts_deliveries_and_dead_letters_into_its_dead_queue() -> None:
    kind = QueueKind("quorum", delivery_limit=7)
    t = Topology("KR", "CN")
    assert kind.arguments(t.inbound_queue) == QUORUM_DOOR
    assert kind.arguments(t.clearance)["x-dead-letter-routing-key"] == t.dead_letter(t.clearance)
    # A .dead queue is replicated too, and dead-letters nowhere: it is the end of the line.
    assert kind.arguments(t.dead_letter(t.inbound_queue)) == {"x-queue-type": "quorum"}


def test_an_unknown_queue_type_or_limit_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'mirrored'"):
        QueueKind("mirrored")
    with pytest.raises(ValueError, match="delivery limit 0"):
        QueueKind("quorum", 0)


def test_the_asyncapi_document_lists_each_queues_arguments_for_each_queue_type() -> None:
    channels = json.loads((SCHEMAS / "asyncapi.json").read_text())["channels"]
    queues = [c for c in channels.values() if c["bindings"]["amqp"]["is"] == "queue"]
    assert len(queues) == 12
    for channel in queues:
        address = channel["address"]
        assert channel["x-eodes-arguments"] == {
            "classic": {},
            "quorum": QueueKind("quorum").arguments(address),
        }, address


# --- configuration ----------------------------------------------------------------------


def test_queue_type_defaults_to_classic_and_quorum_takes_a_delivery_limit(
    tmp_path: Path,
) -> None:
    plain = load_config(node_toml(tmp_path, f'local_url = "amqp://a/x"\n{PARTNER}'), {})
    assert plain.broker.queue_kind == QueueKind("classic", 20)
    quorum = load_config(
        node_toml(
            tmp_path,
            f'local_url = "amqp://a/x"\n{PARTNER}\nqueue_type = "quorum"\ndelivery_limit = 5',
        ),
        {},
    )
    assert quorum.broker.queue_kind == QueueKind("quorum", 5)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ('queue_type = "mirrored"', "broker.queue_type"),
        ('queue_type = "quorum"\ndelivery_limit = 0', "broker.delivery_limit"),
        ('local_urls = ["amqp://a/x", " "]', "broker.local_urls: an empty URL"),
        ('local_urls = ","', "broker.local_urls: names no URL"),
        ('local_urls = ["amqp://a/x", "amqp://a/x"]', "URL 2 repeats an earlier one"),
        ('local_urls = ["amqp://a/x", "amqps://b/x"]', "mixes amqp and amqps URLs"),
        ('local_urls = "amqp://a/x"\nlocal_url = "amqp://b/x"', "is not the first of"),
        ("local_urls = [1]", "broker.local_urls: expected a list of URLs"),
    ],
)
def test_a_bad_broker_setting_is_refused_naming_it(
    tmp_path: Path, setting: str, named: str
) -> None:
    with_url = setting if "local_url" in setting else f'local_url = "amqp://a/x"\n{setting}'
    with pytest.raises(ConfigError, match=named):
        load_config(node_toml(tmp_path, f"{with_url}\n{PARTNER}"), {})


def test_a_cluster_is_a_list_of_urls_and_the_first_is_local_url(tmp_path: Path) -> None:
    secret_file(tmp_path / "pw", "s3cret:/@\n")
    config = load_config(
        node_toml(tmp_path, f'local_urls = {MEMBERS}\nlocal_password_file = "pw"\n{PARTNER}'), {}
    )
    # The one password goes into every member's URL, percent-encoded.
    assert config.broker.link_urls("local") == (
        "amqp://kr-node:s3cret%3A%2F%40@r1.example/eodes-kr",
        "amqp://kr-node:s3cret%3A%2F%40@r2.example/eodes-kr",
    )
    assert config.broker.local_url == config.broker.link_urls("local")[0]
    assert config.broker.link_urls("partner") == ("amqp://cn-peer:x@cn.example/eodes-cn",)
    assert "s3cret" not in repr(config.broker)


def test_the_url_list_may_come_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    path = node_toml(tmp_path, PARTNER)
    environ = {
        "EODES_BROKER_LOCAL_URLS": "amqp://kr-node@r1/v, amqp://kr-node@r2/v",
        "EODES_BROKER_LOCAL_PASSWORD": "pw",
    }
    config = load_config(path, environ)
    assert config.broker.link_urls("local") == ("amqp://kr-node:pw@r1/v", "amqp://kr-node:pw@r2/v")
    secret_file(tmp_path / "members", "amqp://u:a@r1/v\namqp://u:b@r2/v\namqp://u:c@r3/v\n")
    config = load_config(path, {"EODES_BROKER_LOCAL_URLS_FILE": str(tmp_path / "members")})
    assert config.broker.link_urls("local") == (
        "amqp://u:a@r1/v",
        "amqp://u:b@r2/v",
        "amqp://u:c@r3/v",
    )
    (tmp_path / "members").chmod(0o644)
    with pytest.raises(ConfigError, match="open to group or others"):
        load_config(path, {"EODES_BROKER_LOCAL_URLS_FILE": str(tmp_path / "members")})


# --- broker-setup -----------------------------------------------------------------------


def test_broker_setup_declares_quorum_queues_as_the_node_does(tmp_path: Path) -> None:
    config = load_config(
        node_toml(
            tmp_path,
            'local_url = "amqp://kr-node:pw@b/eodes-kr"\n'
            f'{PARTNER}\nqueue_type = "quorum"\ndelivery_limit = 9',
        ),
        {},
    )
    access = link_access(config)
    document = definitions(access, "pw", "partner secret")
    kind = QueueKind("quorum", 9)
    assert {q["name"]: q["arguments"] for q in document["queues"]} == {
        name: kind.arguments(name) for name in access.queues
    }
    # Declaring a queue that dead-letters needs read on it: the node reads every local queue.
    read = access.node_permissions.read
    t = access.topology
    assert all(re.fullmatch(read, q) for q in (t.clearance, t.issuing, t.events))


def test_rabbitmqctl_arguments_are_read_by_name() -> None:
    row = {"arguments": [["x-queue-type", "longstr", "quorum"], ["x-delivery-limit", "byte", 20]]}
    assert listed_arguments(row) == {"x-queue-type": "quorum", "x-delivery-limit": 20}
    assert listed_arguments({"arguments": []}) == {}


# --- a queue that exists with other arguments -------------------------------------------

REPLY = (
    "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'eodes.cn.inbound' in "
    "vhost 'eodes-kr': received none but current is the value 'quorum' of type 'longstr'"
)


def test_a_mismatched_queue_is_one_line_naming_what_it_has_and_what_is_asked() -> None:
    refused = mismatch("eodes.cn.inbound", QueueKind(), REPLY)
    assert isinstance(refused, BrokerRefused)
    text = str(refused)
    assert "\n" not in text
    assert text.startswith(
        "queue eodes.cn.inbound exists on the broker with x-queue-type = 'quorum', but the "
        'configuration (broker.queue_type = "classic") declares it with x-queue-type = not set'
    )
    assert "broker.queue_type" in text.split(": ", 1)[1]


def test_without_the_brokers_text_the_line_says_what_the_configuration_asks_for() -> None:
    text = str(mismatch("eodes.cn.inbound", QueueKind("quorum", 20), ""))
    assert "queue eodes.cn.inbound exists on the broker with other arguments" in text
    assert 'broker.queue_type = "quorum", broker.delivery_limit = 20' in text
    assert "x-queue-type = 'quorum'" in text


# --- a cluster connection -----------------------------------------------------------------


def test_the_attempt_a_cluster_connection_hooks_into_still_exists_in_aio_pika() -> None:
    assert callable(getattr(RobustConnection, ATTEMPT, None))


async def test_a_cluster_connection_moves_round_its_members() -> None:
    connection = ClusterConnection(["amqp://a/v", "amqp://b/v", "amqp://c/v"], first=2)
    try:
        assert (connection.url.host, str(connection)) == ("c", "amqp://c/v")
        connection.next_member()
        assert connection.url.host == "a"
    finally:
        await connection.close()
    with pytest.raises(ValueError, match="at least one URL"):
        ClusterConnection([])


def test_a_url_from_the_environment_replaces_the_tomls_url_list(tmp_path: Path) -> None:
    path = node_toml(tmp_path, f"local_urls = {MEMBERS}\n{PARTNER}")
    config = load_config(path, {"EODES_BROKER_LOCAL_URL": "amqp://kr-node:pw@elsewhere/v"})
    assert config.broker.link_urls("local") == ("amqp://kr-node:pw@elsewhere/v",)
