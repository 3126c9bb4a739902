"""Both broker links over TLS with client certificates, on a RabbitMQ node of the test's own
whose TLS port demands a certificate from the test's CA.

Certificates are made here (a CA, the broker's, the nodes', an expired one, one from
another CA). Two nodes exchange a certificate over TLS; each way a link can be refused
(the broker not trusted, our certificate expired or unknown to it, none given, plain AMQP
on the TLS port, TLS on the plain port) is one line naming the cause. On the local link
that line stops the node at start-up (exit 1): a configuration error, not retried; on the
partner link the node keeps running and says it with each deferred send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

import eodes_node.testing.pair as pair_module
from eodes_node.adapters.amqp import BrokerLink
from eodes_node.broker_tls import LinkTls
from eodes_node.core.records import as_json_dict
from eodes_node.errors import BrokerRefused
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, NodeProcess, Side
from eodes_node.testing.rabbit import PrivateRabbit, TlsListener
from eodes_node.testing.tls import CertFiles, TestAuthority

pytestmark = [pytest.mark.broker, pytest.mark.asyncio(loop_scope="module")]

VHOSTS = ("eodes-test-kr", "eodes-test-cn")


@dataclass(frozen=True)
class Pki:
    ca: TestAuthority
    other: TestAuthority
    kr: CertFiles
    cn: CertFiles
    expired: CertFiles
    stranger: CertFiles


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = TestAuthority(folder / "ca"), TestAuthority(folder / "other", "another CA")
    return Pki(
        ca=ca,
        other=other,
        kr=ca.client("kr-node"),
        cn=ca.client("cn-node"),
        expired=ca.client("kr-node-expired", expired=True),
        stranger=other.client("kr-node-elsewhere"),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rabbit(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PrivateRabbit]:
    server = pki.ca.server("broker")
    listener = TlsListener(ca_file=pki.ca.ca_file, cert_file=server.cert, key_file=server.key)
    async with PrivateRabbit(tmp_path_factory.mktemp("rabbit"), tls=listener) as node:
        for vhost in VHOSTS:
            await node.add_vhost(vhost)
        yield node


def tls_of(
    ca: TestAuthority,
    client: CertFiles | None,
    *,
    link: str = "local",
    server_name: str = "127.0.0.1",
    min_version: str = "1.2",
) -> LinkTls:
    return LinkTls(
        link=link,
        ca_file=ca.ca_file,
        cert_file=client.cert if client else None,
        key_file=client.key if client else None,
        server_name=server_name,
        min_version=min_version,
    )


async def refusal_of(url: str, tls: LinkTls | None) -> str:
    link = BrokerLink(url, name="tls test", timeout_s=5.0, reconnect_s=0.5, tls=tls)
    try:
        with pytest.raises(BrokerRefused) as caught:
            await link.connect()
    finally:
        await link.close()
    return str(caught.value)


async def connections(rabbit: PrivateRabbit) -> list[list[str]]:
    listed = await rabbit.ctl(
        "list_connections", "ssl", "ssl_protocol", "peer_cert_subject", "--quiet",
        "--no-table-headers",
    )  # fmt: skip
    return [line.split("\t") for line in listed.splitlines() if line.strip()]


@pytest.mark.parametrize("min_version", ["1.2", "1.3"])
async def test_a_link_presents_its_client_certificate_over_verified_tls(
    rabbit: PrivateRabbit, pki: Pki, min_version: str
) -> None:
    tls = tls_of(pki.ca, pki.kr, server_name="localhost", min_version=min_version)
    link = BrokerLink(
        rabbit.tls_url(VHOSTS[0]), name="tls test", timeout_s=5.0, reconnect_s=0.5, tls=tls
    )
    try:
        await link.connect()
        seen = await connections(rabbit)
    finally:
        await link.close()
    assert len(seen) == 1, seen
    assert seen[0][0] == "true"
    assert seen[0][1] in ({"1.2": "tlsv1.2", "1.3": "tlsv1.3"}[min_version], "tlsv1.3")
    assert "CN=kr-node" in seen[0][2]


@pytest.mark.parametrize(
    "case",
    ["wrong CA", "wrong name", "expired", "unknown CA", "no certificate", "plain", "TLS to plain"],
)
async def test_each_refusal_is_one_line_naming_its_cause(
    rabbit: PrivateRabbit, pki: Pki, case: str
) -> None:
    tls_url = rabbit.tls_url(VHOSTS[0])
    shown = f"amqps://guest@127.0.0.1:{rabbit.tls_port}/{VHOSTS[0]}"
    expected: dict[str, tuple[str, LinkTls | None, str]] = {
        "wrong CA": (
            tls_url,
            tls_of(pki.other, pki.kr),
            f"the broker at {shown}: its certificate is not trusted: self-signed certificate "
            f"in certificate chain (checked with the CA in {pki.other.ca_file}, for the name "
            "'127.0.0.1'); broker.local_tls_ca must be the CA that signed it, "
            "broker.local_tls_server_name the name it was issued for",
        ),
        "wrong name": (
            tls_url,
            tls_of(pki.ca, pki.kr, server_name="broker.example"),
            f"the broker at {shown}: its certificate is not trusted: Hostname mismatch, "
            "certificate is not valid for 'broker.example' (checked with the CA in "
            f"{pki.ca.ca_file}, for the name 'broker.example'); broker.local_tls_ca must be "
            "the CA that signed it, broker.local_tls_server_name the name it was issued for",
        ),
        "expired": (
            tls_url,
            tls_of(pki.ca, pki.expired),
            f"the broker at {shown} refused our client certificate {pki.expired.cert}: "
            "it has expired (TLS alert certificate_expired)",
        ),
        "unknown CA": (
            tls_url,
            tls_of(pki.ca, pki.stranger),
            f"the broker at {shown} refused our client certificate {pki.stranger.cert}: "
            "it is not signed by a CA the broker trusts (TLS alert unknown_ca)",
        ),
        "no certificate": (
            tls_url,
            tls_of(pki.ca, None),
            f"the broker at {shown} demands a client certificate (TLS alert "
            "certificate_required): set broker.local_tls_cert and broker.local_tls_key",
        ),
        "plain": (
            f"amqp://guest:guest@127.0.0.1:{rabbit.tls_port}/{VHOSTS[0]}",
            None,
            f"the broker at amqp://guest@127.0.0.1:{rabbit.tls_port}/{VHOSTS[0]}: port "
            f"{rabbit.tls_port} speaks TLS only, and this link is plain AMQP: use an amqps:// "
            "URL (with the broker's CA and our client certificate)",
        ),
        "TLS to plain": (
            f"amqps://guest:guest@127.0.0.1:{rabbit.port}/{VHOSTS[0]}",
            tls_of(pki.ca, pki.kr),
            f"the broker at amqps://guest@127.0.0.1:{rabbit.port}/{VHOSTS[0]}: port "
            f"{rabbit.port} does not speak TLS: is it the plain AMQP port? (TLS is on for this "
            "link: amqps:// URL or broker.local_tls = true)",
        ),
    }
    url, tls, message = expected[case]
    line = await refusal_of(url, tls)
    assert line == message
    assert "guest:guest" not in line


def over_tls(
    side: Side, rabbit: PrivateRabbit, pki: Pki, client: CertFiles, **partner: Any
) -> None:
    """Point both of the side's links at the TLS port, each with ``client``'s certificate."""
    fields: dict[str, Any] = {
        "local_url": rabbit.tls_url(side.vhost, host="localhost"),
        "partner_url": rabbit.tls_url(side.config.broker.partner_url.rsplit("/", 1)[1]),
    }
    for link in ("local", "partner"):
        fields |= {
            f"{link}_tls_ca": pki.ca.ca_file,
            f"{link}_tls_cert": client.cert,
            f"{link}_tls_key": client.key,
        }
    fields |= partner
    broker = side.config.broker.model_dump() | fields
    side.config = side.config.model_copy(update={"broker": type(side.config.broker)(**broker)})


async def test_two_nodes_exchange_a_certificate_over_tls_links(
    rabbit: PrivateRabbit, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The local systems of the harness use the plain port; the nodes only the TLS one.
    monkeypatch.setattr(pair_module, "BROKER", rabbit.url(""))
    async with NodePair(tmp_path) as pair:
        over_tls(pair.kr, rabbit, pki, pki.kr)
        over_tls(pair.cn, rabbit, pki, pki.cn)
        await pair.start()
        seen = await connections(rabbit)
        subjects = sorted(row[2] for row in seen if row[0] == "true")
        assert sum("CN=kr-node" in s for s in subjects) == 2, seen  # its local and partner links
        assert sum("CN=cn-node" in s for s in subjects) == 2, seen
        record = as_json_dict(SampleFactory("KCFTA", seed=7).certificates(1)[0])
        await pair.kr.submit([record])
        cleared = await pair.cn.clearance.wait_count(1)
        number = record["header"]["certificate_number"]
        assert orjson.loads(cleared[0].body)["certificate"]["header"]["certificate_number"] == (
            number
        )
        await pair.kr.events.wait_for(
            lambda _: number in pair.kr.events.certificates_with("delivered")
        )


async def test_a_refused_local_link_stops_the_node_with_one_line(
    rabbit: PrivateRabbit, pki: Pki, tmp_path: Path
) -> None:
    pair = NodePair(tmp_path)
    over_tls(pair.kr, rabbit, pki, pki.expired)
    node = NodeProcess(pair.kr.write_config(), tmp_path / "kr")
    try:
        with pytest.raises(AssertionError, match="did not start"):
            await node.start(within=30)
        assert node.process is not None
        code = await asyncio.wait_for(node.process.wait(), 30)
    finally:
        if node.process is not None and node.process.returncode is None:
            await node.kill()
    output = (tmp_path / "kr.1.log").read_text().strip().splitlines()
    assert code != 0, output
    assert output == [
        f"Error: the broker at amqps://guest@localhost:{rabbit.tls_port}/{VHOSTS[0]} refused "
        f"our client certificate {pki.expired.cert}: it has expired (TLS alert "
        "certificate_expired)"
    ]


async def test_a_refused_partner_link_is_said_with_each_deferred_send(
    rabbit: PrivateRabbit, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pair_module, "BROKER", rabbit.url(""))
    async with NodePair(tmp_path) as pair:
        over_tls(
            pair.kr,
            rabbit,
            pki,
            pki.kr,
            partner_tls_cert=pki.stranger.cert,
            partner_tls_key=pki.stranger.key,
        )
        node = NodeProcess(pair.kr.write_config(), tmp_path / "kr")
        await node.start(within=60)
        try:
            await pair.kr.submit([as_json_dict(SampleFactory("KCFTA", seed=8).certificates(1)[0])])
            log = tmp_path / "kr.1.log"
            deadline = time.monotonic() + 60
            deferred: list[dict[str, Any]] = []
            while not deferred:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                lines = [orjson.loads(x) for x in log.read_text().splitlines() if x.strip()]
                deferred = [x for x in lines if x.get("event") == "publish_deferred"]
                await asyncio.sleep(0.1)
            assert deferred[0]["error"] == (
                f"the broker at amqps://guest@127.0.0.1:{rabbit.tls_port}/{VHOSTS[1]} refused "
                f"our client certificate {pki.stranger.cert}: it is not signed by a CA the "
                "broker trusts (TLS alert unknown_ca)"
            )
        finally:
            await node.kill()
