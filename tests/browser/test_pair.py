"""The console and the verification page of a real node, in a real browser: a KR/CN pair
over RabbitMQ, a certificate lost on the way, re-sent by an operator from the console."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, expect

from eodes_node.config import RetrySection
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair
from tests.browser.conftest import Shoot, status_of
from tests.browser.test_verify import offline_verify

pytestmark = pytest.mark.broker

FAST = RetrySection(first_after_s=0.3, multiplier=1.0, max_interval_s=0.3, max_attempts=3)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[NodePair]:
    async with NodePair(tmp_path, retry=FAST, http=True) as nodes:
        await nodes.start()
        yield nodes


async def lose_one(pair: NodePair) -> str:
    """KR sends one certificate while CN is down; it fails, and CN's queue loses it."""
    await pair.cn.stop()
    (cert,) = SampleFactory("KCFTA", seed=71).certificates(1)
    await pair.kr.submit([as_json_dict(cert)])
    await pair.kr.events.wait_for(lambda ms: any(m.type == "event.failed" for m in ms))
    assert pair.cn.connection is not None
    channel = await pair.cn.connection.channel()
    inbound = await channel.get_queue(pair.cn.topology.inbound_queue)
    await inbound.purge()
    await channel.close()
    await pair.cn.start()
    return cert.number


async def test_an_operator_resends_a_lost_certificate_from_the_console(
    pair: NodePair, browser: BrowserContext, shoot: Shoot, tmp_path: Path
) -> None:
    number = await lose_one(pair)
    page = await browser.new_page()
    base = pair.kr.http_url
    assert await status_of(page.goto(base + "/console/failed")) == 401
    await page.fill('input[name="token"]', pair.kr.operator_token)
    await page.get_by_role("button", name="Sign in").click()
    row = page.locator("tbody tr").filter(has_text=number)
    await expect(row.get_by_text("failed")).to_be_visible()
    await row.get_by_role("button", name="Re-send").click()
    await expect(page.get_by_role("status")).to_contain_text(f"{number} was sent again to CN")

    await pair.kr.events.wait_for(lambda _: number in pair.kr.events.certificates_with("delivered"))
    await page.goto(f"{base}/console/certificates/{number}")
    await expect(page.locator("h1 .badge")).to_have_text("delivered")
    await expect(page.locator("ol.timeline")).to_contain_text("retries exhausted")
    await shoot(page, "pair-console-detail")
    await page.goto(base + "/console")
    await shoot(page, "pair-console-dashboard")
    assert len(pair.cn.clearance.messages) == 1


async def test_the_real_node_verifies_its_certificates_for_anyone(
    pair: NodePair, browser: BrowserContext, tmp_path: Path
) -> None:
    (cert,) = SampleFactory("KCFTA", seed=72).certificates(1)
    await pair.kr.submit([as_json_dict(cert)])
    await pair.kr.events.wait_for(
        lambda _: cert.number in pair.kr.events.certificates_with("delivered")
    )
    page = await browser.new_page()
    await page.goto(pair.kr.http_url + "/verify")
    await page.fill('input[name="ref"]', cert.header.reference_number)
    await page.fill('input[name="code"]', cert.header.reference_code)
    await page.get_by_role("button", name="Verify").click()
    await expect(page.get_by_role("status")).to_contain_text("Authentic.")
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Download the signed envelope").click()
    envelope = tmp_path / "envelope.jws"
    await (await download.value).save_as(envelope)
    jwks = await page.request.get(pair.kr.http_url + "/.well-known/jwks.json")
    (tmp_path / "kr.jwks.json").write_bytes(await jwks.body())
    code, out = await offline_verify(envelope, tmp_path / "kr.jwks.json")
    assert code == 0, out
