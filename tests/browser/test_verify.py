"""The public verification page in a real browser: reference number + code -> authentic or
not found, the envelope verified offline, the printable page's QR code, the limits."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from urllib.parse import urlencode

import orjson
from playwright.async_api import BrowserContext, Page, expect
from structlog.testing import capture_logs

from eodes_node.adapters.http.verify import WRONG_CODES, qr_svg
from eodes_node.core.models import Certificate
from tests.browser.conftest import Shoot, status_of
from tests.browser.scene import Scene, start_scene

EODES_NODE = Path(sys.executable).parent / "eodes-node"


async def look_up(page: Page, scene: Scene, ref: str, code: str) -> int:
    await page.goto(scene.base + "/verify")
    await page.fill('input[name="ref"]', ref)
    await page.fill('input[name="code"]', code)
    async with page.expect_response(lambda r: r.url.endswith("/verify")) as answer:
        await page.get_by_role("button", name="Verify").click()
    return (await answer.value).status


def tax_ids(cert: Certificate) -> list[str]:
    parties = [cert.exporter, cert.consignee, cert.producer]
    return [p.tax_id for p in parties if not isinstance(p, str) and p.tax_id]


async def offline_verify(envelope: Path, jwks: Path) -> tuple[int, str]:
    """What anyone can run with the two downloads: the node's own verifier."""
    process = await asyncio.create_subprocess_exec(
        str(EODES_NODE),
        "verify",
        "--jwks",
        str(jwks),
        "--type",
        "coo",
        "--sender",
        "KR",
        str(envelope),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def test_an_authentic_certificate_shows_no_tax_id_and_its_envelope_verifies_offline(
    scene: Scene, browser: BrowserContext, shoot: Shoot, tmp_path: Path
) -> None:
    cert = scene.sent[3]
    assert len(tax_ids(cert)) == 2  # the certificate has tax ids the page must not show
    page = await browser.new_page()
    await page.goto(scene.base + "/verify")
    await shoot(page, "verify-form")
    status = await look_up(page, scene, cert.header.reference_number, cert.header.reference_code)
    assert status == 200
    await expect(page.get_by_role("status")).to_contain_text("Authentic.")
    facts = page.locator("dl.facts")
    await expect(facts).to_contain_text(cert.header.issuing_authority.name)
    await expect(facts).to_contain_text(cert.exporter.name)
    await expect(facts).to_contain_text(cert.header.agreement)
    for item in cert.items:
        row = page.get_by_role("row").filter(has_text=item.hs_code)
        await expect(row).to_contain_text(item.origin_criterion)
    html = await page.content()
    assert all(tax_id not in html for tax_id in tax_ids(cert))
    assert cert.header.reference_code not in await page.locator("main").inner_text()
    await shoot(page, "verify-authentic")

    async with page.expect_download() as download:
        await page.get_by_role("button", name="Download the signed envelope").click()
    envelope = tmp_path / (await download.value).suggested_filename
    await (await download.value).save_as(envelope)
    jwks = await page.request.get(scene.base + "/.well-known/jwks.json")
    (tmp_path / "kr.jwks.json").write_bytes(await jwks.body())
    code, out = await offline_verify(envelope, tmp_path / "kr.jwks.json")
    assert code == 0, out
    assert orjson.loads(out)["certificate"]["header"]["certificate_number"] == cert.number


async def test_wrong_codes_are_refused_then_throttled_and_every_look_up_is_logged(
    scene: Scene, browser: BrowserContext, shoot: Shoot
) -> None:
    cert = scene.sent[1]
    ref, right = cert.header.reference_number, cert.header.reference_code
    page = await browser.new_page()
    with capture_logs() as logs:
        for n in range(WRONG_CODES):
            assert await look_up(page, scene, ref, f"WRONG{n}CODE") == 404
            await expect(page.get_by_role("alert")).to_contain_text("No certificate of origin")
        await shoot(page, "verify-not-found")
        assert await look_up(page, scene, ref, right) == 429  # even the right code, now
        await expect(page.get_by_role("heading", name="Too many look-ups")).to_be_visible()
        await shoot(page, "verify-too-many")
    lookups = [e for e in logs if e["event"] == "verification_lookup"]
    assert [e["outcome"] for e in lookups] == ["not_found"] * WRONG_CODES + ["throttled"]
    assert {e["reference_number"] for e in lookups} == {ref}
    assert all(e["client"] == "127.0.0.1" for e in lookups)
    assert not any("CODE" in str(e) or right in str(e) for e in logs)  # never the code


async def test_look_ups_per_client_are_limited(browser: BrowserContext) -> None:
    scene = await start_scene(lookups_per_minute=2)
    try:
        cert = scene.sent[0]
        page = await browser.new_page()
        ref, code = cert.header.reference_number, cert.header.reference_code
        assert [await look_up(page, scene, ref, code) for _ in range(3)] == [200, 200, 429]
        again = await page.request.get(
            f"{scene.base}/verify?{urlencode({'ref': ref, 'code': code})}"
        )
        assert again.status == 429
        assert int(again.headers["retry-after"]) >= 1
    finally:
        await scene.server.stop()


async def test_the_printable_certificate_has_a_qr_code_that_opens_its_verification(
    scene: Scene, browser: BrowserContext, shoot: Shoot
) -> None:
    cert = scene.sent[5]
    ref, code = cert.header.reference_number, cert.header.reference_code
    page = await browser.new_page()
    await look_up(page, scene, ref, code)
    await page.get_by_role("button", name="Printable certificate").click()
    await expect(page.get_by_role("heading", name=cert.number)).to_be_visible()
    url = f"{scene.base}/verify?{urlencode({'ref': ref, 'code': code})}"
    drawn = await page.locator(".qr svg path.qrline").get_attribute("d")
    expected = re.search(r'class="qrline"[^>]* d="([^"]+)"', str(qr_svg(url)))
    assert expected is not None
    assert drawn == expected.group(1)  # the code encodes exactly the verification address
    await expect(page.locator(".sheet")).to_contain_text(url)
    await shoot(page, "verify-printable")
    await page.emulate_media(media="print")
    await expect(page.locator("header.bar")).to_be_hidden()
    await shoot(page, "verify-printable-print")

    scanned = await browser.new_page()
    assert await status_of(scanned.goto(url)) == 200
    await expect(scanned.get_by_role("status")).to_contain_text("Authentic.")


async def test_a_cancelled_certificate_is_authentic_but_no_longer_valid(
    scene: Scene, browser: BrowserContext
) -> None:
    cert = scene.cancelled
    page = await browser.new_page()
    assert (
        await look_up(page, scene, cert.header.reference_number, cert.header.reference_code) == 200
    )
    await expect(page.get_by_role("status")).to_contain_text("Authentic, but no longer valid.")
    await expect(page.get_by_role("status")).to_contain_text("cancelled")


async def test_bad_input_gets_a_clear_page(scene: Scene, browser: BrowserContext) -> None:
    page = await browser.new_page()
    assert await look_up(page, scene, "REF1", "no spaces allowed") == 400
    await expect(page.get_by_role("alert")).to_contain_text("4 to 32 letters and digits")
    assert await status_of(page.goto(scene.base + "/verify?ref=REF1")) == 400
    assert await status_of(page.goto(scene.base + "/verify/elsewhere")) == 404
    await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()


async def test_the_key_set_is_public_and_holds_public_keys_only(
    scene: Scene, browser: BrowserContext
) -> None:
    page = await browser.new_page()
    response = await page.request.get(scene.base + "/.well-known/jwks.json")
    assert response.status == 200
    assert response.headers["content-type"] == "application/jwk-set+json"
    keys = (await response.json())["keys"]
    assert [k["kid"] for k in keys] == [scene.pair.kr.key.kid]
    assert all("d" not in k for k in keys)
