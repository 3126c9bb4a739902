"""A KR node with a realistic past, served over HTTP for the browser tests.

The KR and CN services run back to back on the in-memory fakes (``ServicePair``): a broker
is not the point of a page test. KR sends certificates; CN receipts them and decides on
some (granted, denied, partial); KR cancels one; two are lost on the wire until their retry
budget runs out (failed). The KR node's real HTTP application then serves that store on a
free loopback port, with the real re-send action wired to KR's service.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eodes_node.adapters.http.access import Access, parse_tokens
from eodes_node.adapters.http.app import HttpServer, create_app
from eodes_node.adapters.http.context import HttpContext
from eodes_node.config import HttpSection
from eodes_node.core.jws import KeySet
from eodes_node.core.models import Certificate
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.service.metrics import NodeMetrics
from eodes_node.service.repairs import Repairs
from eodes_node.testing import ServicePair, ServiceSide

OPERATOR_TOKEN = "op-3f9c1d2e8a7b6c5d4e3f"
VIEWER_TOKEN = "view-0a1b2c3d4e5f60718293"
# A few hours ago, so the envelopes are young enough for ``eodes-node verify`` (which
# refuses one older than the partner's replay window).
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)
ISSUED = START.date()
PARTNER_KEY_DAYS = 20  # the partner's pinned key expires this soon: a dashboard warning


@dataclass
class Scene:
    pair: ServicePair
    server: HttpServer
    sent: list[Certificate]  # delivered to CN, in order
    failed: list[Certificate]  # never receipted
    cancelled: Certificate

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def deliver(self) -> None:
        """Let the wire work again: whatever KR publishes now reaches CN, and back."""
        await self.pair.exchange()


def _named(side: ServiceSide) -> None:
    # The fakes' stores name their signers for verification look-ups; the re-send needs
    # the sent messages, which the store keeps.
    side.store.own, side.store.partner = side.own, side.partner
    side.svc.sent = side.store


async def _history(pair: ServicePair) -> tuple[list[Certificate], list[Certificate]]:
    factory = SampleFactory("KCFTA", seed=21, issue_date=ISSUED)
    sent = factory.certificates(9)
    await pair.kr.submit([as_json_dict(c) for c in sent])
    await pair.exchange()
    pair.clock.advance(2 * 3600)  # clearance decides hours later
    answers = [as_json_dict(factory.feedback(c)) for c in sent[:6]]
    await pair.cn.submit_feedback(answers)
    await pair.exchange()
    pair.clock.advance(1800)
    cancellation = as_json_dict(factory.cancellation(sent[8]))
    await pair.kr.submit([cancellation], kind="coo-cancellation")
    await pair.exchange()
    from_cn = SampleFactory("KCFTA", seed=22, issue_date=ISSUED, exporter="CN", importer="KR")
    await pair.cn.submit([as_json_dict(c) for c in from_cn.certificates(3)])
    await pair.exchange()
    pair.clock.advance(600)
    lost = factory.certificates(2)
    await pair.kr.submit([as_json_dict(c) for c in lost])
    await _lose_until_failed(pair, lost)
    pair.clock.advance(300)
    waiting = factory.certificates(1)  # sent a moment ago, its receipt not back yet
    await pair.kr.submit([as_json_dict(c) for c in waiting])
    await pair.exchange(drop=lambda sender, _envelope: sender is pair.kr)
    pair.clock.advance(45)
    return sent, lost


async def _lose_until_failed(pair: ServicePair, lost: list[Certificate]) -> None:
    """CN never hears of ``lost``: every send is dropped until KR gives up."""
    for _ in range(pair.kr.retry.max_attempts + 2):
        await pair.exchange(drop=lambda sender, _envelope: sender is pair.kr)
        pair.clock.advance(pair.kr.retry.max_interval_s + 1)
        await pair.kr.svc.resend_due()
    states = {pair.kr.store.certificate_state("exporter", c.number) for c in lost}
    assert states == {"failed"}, f"the lost certificates are {states}, not failed"


def _context(pair: ServicePair, settings: HttpSection) -> HttpContext:
    kr, cn = pair.kr, pair.cn
    expires = int((pair.clock.now() + timedelta(days=PARTNER_KEY_DAYS)).timestamp())
    partner_jwks = {"keys": [{**cn.key.public.jwk(), "exp": expires}]}
    metrics = NodeMetrics()

    async def ready() -> list[str]:
        return []

    tokens = f"operator:{OPERATOR_TOKEN}:olga, viewer:{VIEWER_TOKEN}:victor"
    return HttpContext(
        settings=settings,
        own="KR",
        partner="CN",
        reports=kr.store,
        access=Access(parse_tokens(tokens, where="test")),
        clock=pair.clock,
        metrics=metrics,
        readiness=ready,
        own_jwks=KeySet({kr.key.kid: kr.key.public}).to_jwks(),
        partner_jwks=partner_jwks,
        actions=Repairs(kr.svc, kr.store, None, metrics),
    )


async def start_scene(**http: Any) -> Scene:
    pair = ServicePair(start=START)
    _named(pair.kr)
    _named(pair.cn)
    sent, lost = await _history(pair)
    settings = HttpSection(enabled=True, port=0, **http)
    server = HttpServer(create_app(_context(pair, settings)), settings)
    await server.start()
    return Scene(pair, server, sent, lost, sent[8])
