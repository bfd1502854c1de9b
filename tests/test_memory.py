"""A finished request is freed by reference counting alone: nothing of it waits for the cyclic
collector, whose full passes stall the event loop (100+ ms under load, measured in the soak)."""

from __future__ import annotations

import asyncio
import gc
import json

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from gateway.handlers.base import BaseHandler
from gateway.upstream import Exchange
from tests.conftest import VK_OPENAI


@pytest.mark.parametrize("model, stream, status", [
    ("gpt-4o-mini", False, 200), ("gpt-4o-mini", True, 200), ("slow-stream", True, 200),
    ("fault-500", False, 500), ("html-502", False, 502),
])
async def test_a_finished_request_leaves_no_cycle_behind(gateway, model, stream, status):
    async def chat() -> None:
        response = await AsyncHTTPClient().fetch(HTTPRequest(
            f"http://127.0.0.1:{gateway.port}/v1/chat/completions", method="POST",
            headers={"Authorization": f"Bearer {VK_OPENAI}"},
            body=json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]})),
            raise_error=False)
        assert response.code == status

    await chat()  # first-use caches filled
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds unreachable is kept in gc.garbage to look at
    try:
        for _ in range(3):
            await chat()
        await asyncio.sleep(0.05)
        gc.collect()
        stranded = [type(o).__name__ for o in gc.garbage if isinstance(o, (Exchange, BaseHandler))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert stranded == []
