"""Shared fixtures: fake upstreams and a real gateway, all real servers on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from gateway.config import Config
from gateway.keys import KeyRing
from gateway.lifecycle import Gateway, start
from tests.fakes import FakeOpenAI
from tests.processes import GatewayProcess

# Canary secrets: tests assert these never leave the gateway except in the upstream request.
PROVIDER_KEY = "sk-CANARY-openai-provider-key-do-not-leak"
ANTHROPIC_PROVIDER_KEY = "sk-ant-CANARY.anthropic.provider.key.do.not.leak"
VK_OPENAI = "vk_user1_openai"
VK_LIMITED = "vk_limited_models"
VK_SMALL_QUOTA = "vk_small_quota"
VK_ANTHROPIC = "vk_user2_anthropic"


def write_keys(path: Path, openai_base: str, anthropic_base: str) -> Path:
    """A keys file with one key of each kind the tests need."""
    path.write_text(json.dumps({"virtual_keys": {
        VK_OPENAI: {"name": "user1", "provider": "openai", "api_key": PROVIDER_KEY},
        VK_LIMITED: {"name": "limited", "provider": "openai", "api_key": PROVIDER_KEY, "models": ["gpt-4o-mini"]},
        VK_SMALL_QUOTA: {"name": "small-quota", "provider": "openai", "api_key": PROVIDER_KEY, "quota_limit": 3},
        VK_ANTHROPIC: {"name": "user2", "provider": "anthropic", "api_key": ANTHROPIC_PROVIDER_KEY,
                       "base_url": anthropic_base},
    }}))
    return path


def test_config(tmp_path: Path, openai_base: str, **overrides: Any) -> Config:
    env = {
        "KEYS_FILE_PATH": str(tmp_path / "keys.json"),
        "SERVER_HOST": "127.0.0.1",
        "SERVER_PORT": "0",
        "DATABASE_PATH": str(tmp_path / "gateway.db"),
        "LOG_TO_FILE": "true",
        "LOG_FILE_PATH": str(tmp_path / "gateway.log"),
        "OPENAI_BASE_URL": openai_base,
        "REQUEST_TIMEOUT": "2",
    }
    return Config.load(env).replace(**overrides)


test_config.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def fake_openai(io_loop) -> FakeOpenAI:  # type: ignore[no-untyped-def]
    fake = FakeOpenAI()
    yield fake
    io_loop.run_sync(fake.close)


@pytest.fixture
def start_gateway(io_loop, tmp_path, fake_openai) -> Callable[..., Any]:  # type: ignore[no-untyped-def]
    """`await start_gateway(**config overrides by field name)` inside a test; stopped at teardown."""
    running: list[Gateway] = []

    async def _start(anthropic_base: str = "http://127.0.0.1:9", **overrides: Any) -> Gateway:
        config = test_config(tmp_path, fake_openai.base_url, **overrides)
        if not config.keys_file.exists():
            write_keys(config.keys_file, fake_openai.base_url, anthropic_base)
        keys = KeyRing.load(config.keys_file, os.environ)
        gateway = await start(config, keys, environ=os.environ)
        running.append(gateway)
        return gateway

    yield _start
    for gateway in running:
        io_loop.run_sync(lambda: gateway.stop(grace=2))


@pytest.fixture
def start_gateway_process(io_loop) -> Callable[..., Any]:  # type: ignore[no-untyped-def]
    """`await start_gateway_process(...)` (GatewayProcess.start's arguments); killed at teardown if a
    failing test left it running."""
    started: list[GatewayProcess] = []

    async def _start(*args: Any, **kwargs: Any) -> GatewayProcess:
        process = await GatewayProcess.start(*args, **kwargs)
        started.append(process)
        return process

    yield _start
    for process in started:
        if process.process.returncode is None:
            process.process.kill()
            io_loop.run_sync(process.process.wait)


@pytest.fixture
def gateway(io_loop, start_gateway) -> Gateway:  # type: ignore[no-untyped-def]
    return io_loop.run_sync(start_gateway)


CANARIES = (PROVIDER_KEY, ANTHROPIC_PROVIDER_KEY, VK_OPENAI, VK_LIMITED, VK_SMALL_QUOTA, VK_ANTHROPIC)
# What the gateway writes: its database (and WAL) and JSON log. keys.json holds the keys by design.
_WRITTEN_BY_THE_GATEWAY = ("*.db", "*.db-wal", "*.log")


@pytest.fixture(autouse=True)
def no_secret_in_any_log_or_file(caplog: pytest.LogCaptureFixture, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Every test, faults included: no canary key in a log record (tracebacks included) or in a file
    the gateway wrote. test_secrets.py checks responses, pages and metrics on top of this."""
    caplog.set_level(logging.INFO)
    yield
    for record in [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.get_records("teardown")]:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        leaked = [c for c in CANARIES if c in text]
        assert not leaked, f"a key reached the log ({record.name}): {text[:300]}"
    for pattern in _WRITTEN_BY_THE_GATEWAY:
        for path in (found for found in tmp_path.rglob(pattern) if found.is_file()):
            content = path.read_bytes()
            leaked = [c for c in CANARIES if c.encode() in content]
            assert not leaked, f"a key reached {path.name}"


def base_url(gateway: Gateway, suffix: str = "/v1") -> str:
    return f"http://127.0.0.1:{gateway.port}{suffix}"


def pytest_unconfigure(config: pytest.Config) -> None:
    """A database left open would keep the run from ever exiting (aiosqlite's thread): fail loudly instead."""
    import sys
    import threading

    leaked = [t for t in threading.enumerate() if "connection_worker" in t.name and t.is_alive()]
    if leaked:
        print(f"\nFAILED: {len(leaked)} aiosqlite connection(s) were never closed; a test leaks a Store.", flush=True)
        sys.stderr.flush()
        os._exit(1)
