"""Client connections are capped below the open-file limit: past the cap, an immediate 503, never
a process out of file descriptors."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
from collections import Counter

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.iostream import IOStream

from gateway.listener import RESERVED_FDS, connection_cap
from tests.conftest import VK_OPENAI, write_keys

SLOW = json.dumps({"model": "slow-stream", "stream": True, "messages": [{"role": "user", "content": "x"}]})


async def chat(port: int, body: str = SLOW):  # type: ignore[no-untyped-def]
    return await AsyncHTTPClient(force_instance=True).fetch(HTTPRequest(
        f"http://127.0.0.1:{port}/v1/chat/completions", method="POST", body=body, request_timeout=15,
        headers={"Authorization": f"Bearer {VK_OPENAI}"}), raise_error=False)


async def test_a_connection_past_the_cap_gets_an_immediate_503(start_gateway, fake_openai):
    gateway = await start_gateway(max_client_connections=3)
    held = [asyncio.ensure_future(chat(gateway.port)) for _ in range(3)]
    while fake_openai.state.open_streams < 3:
        await asyncio.sleep(0.01)
    stream = IOStream(socket.socket())
    await stream.connect(("127.0.0.1", gateway.port))
    reply = await asyncio.wait_for(stream.read_until_close(), 2)  # answered without even a request
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in head
    assert json.loads(body)["error"]["code"] == "gateway_overloaded"
    assert [r.code for r in await asyncio.gather(*held)] == [200, 200, 200]
    assert (await chat(gateway.port)).code == 200  # room again
    assert gateway.ctx.connections.stats()["refused"] == 1 and gateway.ctx.connections.stats()["limit"] == 3


def test_the_cap_is_what_the_open_file_limit_leaves():
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert connection_cap(None, 100) == max(16, soft - 200 - RESERVED_FDS)
    assert connection_cap(7, 100) == 7


def test_the_soft_open_file_limit_is_raised_to_the_hard_one():
    script = ("import resource; from gateway.listener import raise_open_file_limit; "
              "resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
              "print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[1])")
    raised, hard = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                  check=True).stdout.split()
    assert raised == hard


async def test_a_flood_at_a_low_open_file_limit_is_refused_cleanly(start_gateway_process, fake_openai, tmp_path):
    # 128 descriptors, 16 upstream slots: room for 128 - 2*16 - 64 = 32 clients. 100 streams at once
    # used to exhaust the descriptors: ~800 accept tracebacks a second, provider calls failing as 502.
    keys = write_keys(tmp_path / "keys.json", fake_openai.base_url, "http://127.0.0.1:9")
    process = await start_gateway_process(keys, tmp_path / "gateway.db", fake_openai.base_url, open_files=128,
                                         MAX_UPSTREAM_CONCURRENCY="16", QUOTA_ENABLED="false")
    async def outcome() -> int | str:
        try:
            return (await chat(process.port)).code
        except OSError:  # refused while still sending the request: the 503 may be lost to the reset
            return "reset"

    codes = Counter(await asyncio.gather(*(outcome() for _ in range(100))))
    assert codes[200] >= 16 and codes[503] > 0 and codes[200] + codes[503] + codes[599] + codes["reset"] == 100
    assert (await chat(process.port)).code == 200  # and it recovers at once
    assert await process.stop(signal.SIGTERM) == 0
    log = "".join(process.lines)
    assert "Traceback" not in log and "Too many open files" not in log
    assert "refusing connections" in log
    with sqlite3.connect(tmp_path / "gateway.db") as db:  # every request that got in has its row
        assert db.execute("SELECT count(*) FROM interactions WHERE status = 200").fetchone()[0] == codes[200] + 1
