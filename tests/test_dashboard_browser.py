"""The dashboard in a real headless Chromium: charts drawn, no console errors, filters, detail, refresh."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import base_url
from tests.test_dashboard import chat, wait_for_rows

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent: the browser test needs a system Chromium")


async def traffic(gateway) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        await chat(gateway, f"mini {i}")
    await chat(gateway, "big question", model="gpt-4o")
    await chat(gateway, "this one fails", model="fault-500")
    await wait_for_rows(gateway, 5)


async def test_dashboard_in_a_real_browser(gateway):
    from playwright.async_api import async_playwright, expect

    await traffic(gateway)
    root = base_url(gateway, "")
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            # The token opens a session and disappears from the address bar.
            await page.goto(f"{root}/dashboard?token={gateway.ctx.admin_key}")
            assert page.url == f"{root}/dashboard"
            await page.wait_for_selector('[data-chart="hour"] svg rect.bar')
            await page.wait_for_selector('[data-chart="day"] svg rect.bar-error')
            assert await page.locator('[data-chart="hour"] svg rect.hit').count() >= 60
            assert await page.locator('[data-chart="day"] svg rect.hit').count() >= 24
            assert await page.locator("tbody[data-fragment=latest] tr.link-row").count() == 5
            await page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

            # A refresh brings new traffic in without a reload.
            await page.evaluate("window.__sameDocument = true")
            await chat(gateway, "arrived later", model="gpt-4o")
            await wait_for_rows(gateway, 6)
            await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
            # expect() polls without eval, which the page's Content-Security-Policy forbids.
            await expect(page.locator("tbody[data-fragment=latest] tr.link-row")).to_have_count(6)
            assert await page.evaluate("window.__sameDocument") is True
            assert "6" in await page.locator(".stat .value").first.inner_text()

            # The filter narrows the table; a row opens its detail.
            await page.goto(f"{root}/dashboard/interactions")
            assert await page.locator("tr.link-row").count() == 6
            await page.select_option('select[name="model"]', "gpt-4o")
            await page.wait_for_url(re.compile(r"/dashboard/interactions\?model=gpt-4o$"))
            assert await page.locator("tr.link-row").count() == 2
            await page.locator('tr.link-row td[data-label="Provider"]').last.click()
            await page.wait_for_url(re.compile(r"/dashboard/interactions/[0-9a-f]{32}$"))
            assert "Echo: big question" in await page.locator("section.body pre").last.inner_text()
            await page.screenshot(path=str(ARTIFACTS / "dashboard-detail.png"), full_page=True)

            keys = await page.goto(f"{root}/dashboard/keys")
            assert keys is not None and keys.status == 200
            assert await page.locator("table.keys tbody tr").count() == 4

            phone = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.on("pageerror", lambda e: problems.append(f"phone page error: {e}"))
            await phone.goto(f"{root}/dashboard?token={gateway.ctx.admin_key}")
            await phone.wait_for_selector('[data-chart="hour"] svg rect.bar')
            width = await phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the overview scrolls sideways on a phone ({width}px)"
            await phone.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
        finally:
            await browser.close()
    assert problems == []


async def test_dashboard_reads_with_javascript_off(gateway):
    from playwright.async_api import async_playwright

    await traffic(gateway)
    root = base_url(gateway, "")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = await browser.new_context(java_script_enabled=False)
            page = await context.new_page()
            await page.goto(f"{root}/dashboard")
            await page.fill("#key", gateway.ctx.admin_key)
            await page.click("form[action='/dashboard/login'] button")
            await page.wait_for_url(f"{root}/dashboard")
            assert await page.locator("tbody[data-fragment=latest] tr.link-row").count() == 5
            assert "5 requests, 1 error" in await page.locator('[data-chart="hour"]').inner_text()
            await page.goto(f"{root}/dashboard/interactions")
            await page.select_option('select[name="status"]', "error")
            await page.click(".filters button[type=submit]")
            await page.wait_for_url(re.compile(r"status=error"))
            assert await page.locator("tr.link-row").count() == 1
            await page.click("tr.link-row a")
            await page.wait_for_url(re.compile(r"/dashboard/interactions/[0-9a-f]{32}$"))
            assert "fault-500" in await page.content()
        finally:
            await browser.close()
