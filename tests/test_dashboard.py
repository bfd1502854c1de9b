"""The operator dashboard: admin-only access, escaping, keys by label only, filters, the refresh JSON."""

from __future__ import annotations

import asyncio
import json
import re
import time
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import openai
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse

from gateway.handlers import dashboard
from tests.conftest import ANTHROPIC_PROVIDER_KEY, PROVIDER_KEY, VK_ANTHROPIC, VK_LIMITED, VK_OPENAI, VK_SMALL_QUOTA, base_url

SECRETS = (VK_OPENAI, VK_LIMITED, VK_SMALL_QUOTA, VK_ANTHROPIC, PROVIDER_KEY, ANTHROPIC_PROVIDER_KEY)
PAGES = ("/dashboard", "/dashboard/keys", "/dashboard/interactions")
MARKUP = "<script>alert(1)</script>{{7*7}}"


async def get(gateway, path: str, *, token: str | None = None, cookie: str | None = None,  # type: ignore[no-untyped-def]
              headers: dict[str, str] | None = None) -> HTTPResponse:
    """GET a gateway path without following redirects; never raises on a status."""
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if cookie is not None:
        headers["Cookie"] = cookie
    return await AsyncHTTPClient().fetch(HTTPRequest(base_url(gateway, path), headers=headers, follow_redirects=False),
                                         raise_error=False)


async def post_form(gateway, path: str, fields: dict[str, str]) -> HTTPResponse:  # type: ignore[no-untyped-def]
    return await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gateway, path), method="POST", body=urlencode(fields), follow_redirects=False,
        headers={"Content-Type": "application/x-www-form-urlencoded"}), raise_error=False)


async def chat(gateway, content: str, *, model: str = "gpt-4o-mini", key: str = VK_OPENAI) -> None:  # type: ignore[no-untyped-def]
    """One chat request through the gateway with the OpenAI SDK; errors are part of the traffic too."""
    client = openai.AsyncOpenAI(api_key=key, base_url=base_url(gateway), max_retries=0, timeout=10)
    try:
        await client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}])
    except openai.APIStatusError:
        pass
    finally:
        await client.close()


async def wait_for_rows(gateway, count: int, timeout: float = 5.0) -> list[Any]:  # type: ignore[no-untyped-def]
    """Poll the store until the background writer has stored `count` interactions."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await gateway.ctx.store.recent(limit=1000)
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) >= count, f"only {len(rows)} of {count} interactions were stored"
            return rows
        await asyncio.sleep(0.02)


def session_cookie(response: HTTPResponse) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("Set-Cookie"):
        cookie.load(header)
    return cookie


def text(response: HTTPResponse) -> str:
    return response.body.decode()


# --- access ---------------------------------------------------------------------------------

async def test_root_redirects_to_dashboard(gateway):
    response = await get(gateway, "/")
    assert response.code == 302
    assert response.headers["Location"] == "/dashboard"


@pytest.mark.parametrize("page", PAGES)
async def test_without_a_key_every_page_is_the_login_form_and_no_data(gateway, page):
    await chat(gateway, "visible only to the admin")
    await wait_for_rows(gateway, 1)
    response = await get(gateway, page)
    assert response.code == 401
    body = text(response)
    assert '<form method="post" action="/dashboard/login">' in body
    assert f'name="next" value="{page}"' in body
    for data in ("user1", "gpt-4o-mini", "Latest interactions", "visible only"):
        assert data not in body
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("presented", ["wrong-admin-key", VK_OPENAI])
async def test_a_wrong_key_or_a_virtual_key_is_refused(gateway, presented):
    by_header = await get(gateway, "/dashboard/keys", token=presented)
    assert by_header.code == 401
    assert "That is not the admin key." in text(by_header)
    assert "small-quota" not in text(by_header)
    by_query = await get(gateway, f"/dashboard/keys?token={presented}")
    assert by_query.code == 401
    assert "Set-Cookie" not in by_query.headers
    assert presented not in text(by_query)  # not even echoed into the login form's next=
    forged = await get(gateway, "/dashboard/keys", cookie=f"gateway_admin={presented}")
    assert forged.code == 401
    data = await get(gateway, "/dashboard/data.json", token=presented)
    assert data.code == 401
    assert json.loads(data.body)["error"]["type"] == "authentication_error"


async def test_admin_key_by_header_opens_every_page(gateway):
    for page in (*PAGES, "/dashboard/data.json", "/dashboard/data.json?page=keys"):
        response = await get(gateway, page, token=gateway.ctx.admin_key)
        assert response.code == 200, page
        assert "Set-Cookie" not in response.headers  # a header needs no session


async def test_token_sets_a_strict_httponly_cookie_and_the_redirect_drops_the_token(gateway):
    admin_key = gateway.ctx.admin_key
    response = await get(gateway, f"/dashboard/interactions?model=gpt-4o&token={admin_key}&page=1")
    assert response.code == 302
    assert response.headers["Location"] == "/dashboard/interactions?model=gpt-4o&page=1"
    set_cookie = response.headers["Set-Cookie"]
    assert admin_key not in set_cookie  # the cookie holds an HMAC of the key, not the key
    morsel = session_cookie(response)["gateway_admin"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/dashboard"
    assert not morsel["secure"]  # plain HTTP on loopback; Secure is set behind HTTPS
    followed = await get(gateway, response.headers["Location"], cookie=f"gateway_admin={morsel.value}")
    assert followed.code == 200
    assert "<h1>Interactions</h1>" in text(followed)


async def test_login_form_sets_the_cookie_and_returns_to_the_page(gateway):
    wrong = await post_form(gateway, "/dashboard/login", {"key": VK_OPENAI, "next": "/dashboard/keys"})
    assert wrong.code == 401
    assert "Set-Cookie" not in wrong.headers
    right = await post_form(gateway, "/dashboard/login", {"key": gateway.ctx.admin_key, "next": "/dashboard/keys"})
    assert right.code == 303
    assert right.headers["Location"] == "/dashboard/keys"
    morsel = session_cookie(right)["gateway_admin"]
    assert morsel["httponly"] is True and morsel["samesite"] == "Strict"
    keys = await get(gateway, "/dashboard/keys", cookie=f"gateway_admin={morsel.value}")
    assert keys.code == 200
    logout = await post_form(gateway, "/dashboard/logout", {})
    assert logout.code == 303
    assert session_cookie(logout)["gateway_admin"].value == ""


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/dashboard", "/v1/models"])
async def test_login_never_redirects_off_the_dashboard(gateway, target):
    response = await post_form(gateway, "/dashboard/login", {"key": gateway.ctx.admin_key, "next": target})
    assert response.code == 303
    assert response.headers["Location"] == "/dashboard"


async def test_pages_carry_no_store_and_a_strict_content_security_policy(gateway):
    response = await get(gateway, "/dashboard", token=gateway.ctx.admin_key)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    login = await get(gateway, "/dashboard")
    assert login.headers["Cache-Control"] == "no-store"


async def test_static_assets_are_served_with_a_cache_busting_version(gateway):
    body = text(await get(gateway, "/dashboard", token=gateway.ctx.admin_key))
    for name, ctype in (("dashboard.css", "text/css"), ("dashboard.js", "javascript")):
        match = re.search(rf'/static/{re.escape(name)}\?v=[0-9a-f]+', body)
        assert match, name
        asset = await get(gateway, match.group(0))
        assert asset.code == 200
        assert ctype in asset.headers["Content-Type"]


async def test_dashboard_requests_are_not_recorded_as_interactions(gateway):
    await chat(gateway, "one real request")
    await wait_for_rows(gateway, 1)
    for page in (*PAGES, "/dashboard/data.json", "/"):
        await get(gateway, page, token=gateway.ctx.admin_key)
        await get(gateway, page)
    await chat(gateway, "a second real request")
    rows = await wait_for_rows(gateway, 2)
    await asyncio.sleep(0.1)  # anything recorded between the two would be stored by now
    rows = await gateway.ctx.store.recent(limit=100)
    assert [row.endpoint for row in rows] == ["chat", "chat"]


# --- what the pages show --------------------------------------------------------------------

async def test_markup_in_a_prompt_and_a_model_name_is_shown_escaped(gateway):
    await chat(gateway, f"probe {MARKUP} end")
    await chat(gateway, "hello", model=MARKUP)
    rows = await wait_for_rows(gateway, 2)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;{{7*7}}"
    admin = gateway.ctx.admin_key
    pages = ["/dashboard", "/dashboard/interactions"] + [f"/dashboard/interactions/{row.id}" for row in rows]
    for page in pages:
        body = text(await get(gateway, page, token=admin))
        assert "<script>alert" not in body, page
        assert escaped in body, page
        # An evaluated {{7*7}} would read 49 right after the closing script tag. (Searching for a loose
        # "49 ... end" matched a timestamp such as 10:49:49 followed by "end" on the same line.)
        assert "script&gt;49" not in body and "</script>49" not in body, page
    detail = text(await get(gateway, f"/dashboard/interactions/{rows[-1].id}", token=admin))
    assert f"probe {escaped} end" in detail  # the request, pretty-printed, escaped once
    fragments = json.loads((await get(gateway, "/dashboard/data.json", token=admin)).body)["html"]
    assert escaped in fragments["latest"] and "<script>alert" not in fragments["latest"]


async def test_keys_page_shows_labels_never_keys(gateway):
    for _ in range(2):
        await chat(gateway, "spend quota", key=VK_SMALL_QUOTA)
    await wait_for_rows(gateway, 2)
    admin = gateway.ctx.admin_key
    body = text(await get(gateway, "/dashboard/keys", token=admin))
    for label in ("user1", "limited", "small-quota", "user2"):
        assert f">{label}</a>" in body
    assert "2 / 3" in body  # small-quota: two of its three requests used
    assert "gpt-4o-mini" in body  # the limited key's allow-list
    responses = [body] + [text(await get(gateway, page, token=admin))
                          for page in ("/dashboard", "/dashboard/interactions", "/dashboard/data.json",
                                       "/dashboard/data.json?page=keys")]
    for secret in SECRETS:
        for response in responses:
            assert secret not in response


async def test_keys_json_counts_use_in_the_window(gateway):
    await chat(gateway, "one", key=VK_SMALL_QUOTA)
    await wait_for_rows(gateway, 1)
    payload = json.loads((await get(gateway, "/dashboard/data.json?page=keys", token=gateway.ctx.admin_key)).body)
    small = next(k for k in payload["data"] if k["label"] == "small-quota")
    assert (small["used"], small["quota_limit"], small["requests_24h"]) == (1, 3, 1)
    assert small["tokens"] > 0 and small["last_used"]
    assert "small-quota" in payload["html"]["keys"]


async def test_overview_shows_traffic_errors_and_latest(gateway):
    await chat(gateway, "fine")
    await chat(gateway, "broken", model="fault-500")
    await wait_for_rows(gateway, 2)
    admin = gateway.ctx.admin_key
    payload = json.loads((await get(gateway, "/dashboard/data.json", token=admin)).body)
    data = payload["data"]
    assert (data["hour"]["requests"], data["hour"]["errors"]) == (2, 1)
    assert data["day"]["requests"] == 2
    assert len(data["hour"]["buckets"]) >= 60 and len(data["day"]["buckets"]) >= 24
    assert data["usage_24h"]["total_tokens"] > 0
    assert data["latency_ms"]["p50"] is not None
    assert [row["model"] for row in data["latest"]] == ["fault-500", "gpt-4o-mini"]
    assert "request" not in data["latest"][0]  # bodies stay on the detail page
    assert {p["name"] for p in data["providers"]} >= {"openai", "anthropic"}
    body = text(await get(gateway, "/dashboard", token=admin))
    assert 'data-chart="hour"' in body and 'data-chart="day"' in body
    assert "fault-500" in body and "Latest interactions" in body
    assert 'id="dashboard-data"' in body


async def test_interactions_filter_and_paginate(gateway, monkeypatch):
    monkeypatch.setattr(dashboard, "PAGE_SIZE", 2)
    for i in range(3):
        await chat(gateway, f"mini {i}")
    await chat(gateway, "big", model="gpt-4o")
    await chat(gateway, "broken", model="fault-500")
    await wait_for_rows(gateway, 5)
    admin = gateway.ctx.admin_key

    def detail_links(body: str) -> list[str]:
        return re.findall(r'<tr class="link-row" data-href="(/dashboard/interactions/[0-9a-f]+)"', body)

    first = text(await get(gateway, "/dashboard/interactions", token=admin))
    assert len(detail_links(first)) == 2
    assert 'href="/dashboard/interactions?page=2"' in first and "← Newer" not in first
    third = text(await get(gateway, "/dashboard/interactions?page=3", token=admin))
    assert len(detail_links(third)) == 1 and "Older →" not in third
    monkeypatch.setattr(dashboard, "PAGE_SIZE", 50)
    by_model = text(await get(gateway, "/dashboard/interactions?model=gpt-4o-mini", token=admin))
    assert len(detail_links(by_model)) == 3
    assert '<option value="gpt-4o-mini" selected>' in by_model
    errors = text(await get(gateway, "/dashboard/interactions?status=error", token=admin))
    assert len(detail_links(errors)) == 1 and "fault-500" in errors
    assert len(detail_links(text(await get(gateway, "/dashboard/interactions?status=200&key=user1", token=admin)))) == 4
    nothing = text(await get(gateway, "/dashboard/interactions?key=user2", token=admin))
    assert "No interactions match these filters." in nothing


async def test_detail_page_pretty_prints_request_and_reply(gateway):
    await chat(gateway, "pretty please")
    (row,) = await wait_for_rows(gateway, 1)
    body = text(await get(gateway, f"/dashboard/interactions/{row.id}", token=gateway.ctx.admin_key))
    assert '  &#34;messages&#34;: [' in body or '  "messages": [' in body.replace("&#34;", '"')
    assert "Echo: pretty please" in body
    assert "user1" in body and "gpt-4o-mini" in body


async def test_unknown_interaction_and_bad_filters_render_html_errors(gateway):
    admin = gateway.ctx.admin_key
    missing = await get(gateway, "/dashboard/interactions/" + "0" * 32, token=admin)
    assert missing.code == 404
    assert missing.headers["Content-Type"].startswith("text/html") and "No interaction" in text(missing)
    bad = await get(gateway, "/dashboard/interactions?status=teapot", token=admin)
    assert bad.code == 400 and "status filter" in text(bad)
    bad_page = await get(gateway, "/dashboard/data.json?page=nope", token=admin)
    assert bad_page.code == 400 and json.loads(bad_page.body)["error"]["param"] == "page"
