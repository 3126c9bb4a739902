"""The operator console in a real browser: sign-in, dashboard, search, timeline, re-send."""

from __future__ import annotations

from playwright.async_api import BrowserContext, Page, expect

from tests.browser.conftest import Shoot, status_of
from tests.browser.scene import OPERATOR_TOKEN, PARTNER_KEY_DAYS, VIEWER_TOKEN, Scene


async def sign_in(page: Page, scene: Scene, token: str, path: str = "/console") -> None:
    assert await status_of(page.goto(scene.base + path)) == 401  # the sign-in page, not the page
    await page.fill('input[name="token"]', token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(scene.base + path)


async def test_sign_in_keeps_the_token_out_of_reach_and_sign_out_ends_it(
    scene: Scene, browser: BrowserContext, shoot: Shoot
) -> None:
    page = await browser.new_page()
    asked = await page.goto(scene.base + "/console")
    assert asked is not None
    assert asked.status == 401
    assert asked.headers["www-authenticate"] == 'Bearer realm="eodes-node"'
    await expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    await shoot(page, "console-sign-in")

    await page.fill('input[name="token"]', "not-a-token-of-this-node")
    async with page.expect_response(lambda r: r.request.method == "POST") as refused:
        await page.get_by_role("button", name="Sign in").click()
    assert (await refused.value).status == 401
    await expect(page.get_by_role("alert")).to_have_text("That token is not valid here.")

    await page.fill('input[name="token"]', OPERATOR_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    cookies = await browser.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"], c["path"]) for c in cookies] == [
        ("eodes_console", True, "Strict", "/console")
    ]
    assert OPERATOR_TOKEN not in cookies[0]["value"]
    assert await page.evaluate("document.cookie") == ""  # no script can read the session
    assert OPERATOR_TOKEN not in await page.content()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    assert await status_of(page.goto(scene.base + "/console/certificates")) == 401


async def test_dashboard_counts_waiting_and_key_expiry(
    scene: Scene, browser: BrowserContext, shoot: Shoot
) -> None:
    page = await browser.new_page()
    await sign_in(page, scene, VIEWER_TOKEN)
    sent = page.locator("section", has=page.get_by_role("heading", name="Sent to CN (we issued)"))
    for state, count in {"granted": 4, "failed": 2, "cancelled": 1, "pending": 1}.items():
        row = sent.get_by_role("row", name=state)
        await expect(row.locator("td.num")).to_have_text(str(count))
    received = page.locator("section", has=page.get_by_role("heading", name="Received from CN"))
    await expect(received.get_by_role("row", name="available").locator("td.num")).to_have_text("3")
    waiting = page.locator(".stat", has_text="waiting for the partner's receipt")
    await expect(waiting.locator(".n")).to_have_text("1")
    await expect(page.locator(".stat", has_text="oldest waiting").locator(".n")).to_have_text(
        "45 s"
    )
    warning = page.get_by_role("status").filter(has_text="CN's key")
    await expect(warning).to_contain_text(f"expires in {PARTNER_KEY_DAYS} days")
    await shoot(page, "console-dashboard")


async def test_search_narrows_and_detail_shows_the_timeline(
    scene: Scene, browser: BrowserContext, shoot: Shoot
) -> None:
    page = await browser.new_page()
    await sign_in(page, scene, VIEWER_TOKEN, "/console/certificates")
    await expect(page.get_by_text("15 certificates match.")).to_be_visible()
    await shoot(page, "console-certificates")
    await page.select_option('select[name="state"]', "granted")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_text("4 certificates match.")).to_be_visible()
    states = await page.locator("tbody td:nth-child(3)").all_inner_texts()
    assert states == ["granted"] * 4
    await page.select_option('select[name="state"]', "")

    decided = scene.sent[0]
    await page.fill('input[name="number"]', decided.header.reference_number.lower())
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_text("1 certificate match.")).to_be_visible()
    await page.get_by_role("link", name=decided.number).click()
    await expect(page.get_by_role("heading", name=decided.number)).to_be_visible()
    timeline = page.locator("ol.timeline li")
    await expect(timeline.first).to_contain_text("new → pending")
    labels = await page.locator("ol.timeline li .badge").all_inner_texts()
    assert labels[:2] == ["submitted", "sent coo"]
    assert "receipt accepted" in labels
    await expect(page.get_by_text("Decision:")).to_be_visible()
    await shoot(page, "console-detail")


async def test_bad_input_gets_a_clear_page(scene: Scene, browser: BrowserContext) -> None:
    page = await browser.new_page()
    await sign_in(page, scene, VIEWER_TOKEN)
    assert await status_of(page.goto(scene.base + "/console/certificates/KR2026NOSUCH0001")) == 404
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    dates = "issued_from=2026-03-09&issued_to=2026-03-01"
    assert await status_of(page.goto(f"{scene.base}/console/certificates?{dates}")) == 400
    await expect(page.get_by_text("'issued from' is after 'issued to'")).to_be_visible()
    assert await status_of(page.goto(scene.base + "/console/certificates?state=lost")) == 400
    assert await status_of(page.goto(scene.base + "/console/nowhere")) == 404


async def test_failed_list_resends_and_the_certificate_gets_delivered(
    scene: Scene, browser: BrowserContext, shoot: Shoot
) -> None:
    viewer = await browser.new_page()
    await sign_in(viewer, scene, VIEWER_TOKEN, "/console/failed")
    await expect(viewer.get_by_text("operators re-send")).to_have_count(2)
    await expect(viewer.get_by_role("button", name="Re-send")).to_have_count(0)
    await viewer.get_by_role("button", name="Sign out").click()

    page = await browser.new_page()
    await sign_in(page, scene, OPERATOR_TOKEN, "/console/failed")
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(2)
    await shoot(page, "console-failed")
    lost = scene.failed[0]
    row = rows.filter(has_text=lost.number)
    await row.get_by_role("button", name="Re-send").click()
    await expect(page.get_by_role("status")).to_contain_text(
        f"{lost.number} was sent again to CN as the same message"
    )
    await expect(rows).to_have_count(1)
    await shoot(page, "console-failed-resent")

    await scene.deliver()
    await page.goto(f"{scene.base}/console/certificates/{lost.number}")
    await expect(page.locator("h1 .badge")).to_have_text("delivered")


async def test_only_the_console_form_can_resend(scene: Scene, browser: BrowserContext) -> None:
    """The re-send is the console's one write: it needs an operator, and a form of ours."""
    page = await browser.new_page()
    lost = scene.failed[1].number
    url = f"{scene.base}/console/certificates/{lost}/resend"
    anonymous = await page.request.post(url, form={"csrf": "x"})
    assert anonymous.status == 401
    as_viewer = await page.request.post(
        url, headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}, form={}
    )
    assert as_viewer.status == 403
    await sign_in(page, scene, OPERATOR_TOKEN)
    forged = await page.request.post(url, form={"csrf": "not-the-session-token"})
    assert forged.status == 403
    csrf = await page.locator('input[name="csrf"]').first.get_attribute("value")
    assert csrf
    elsewhere = await page.request.post(
        url, headers={"Origin": "https://evil.example"}, form={"csrf": csrf}
    )
    assert elsewhere.status == 403
    assert scene.pair.kr.store.certificate_state("exporter", lost) == "failed"
