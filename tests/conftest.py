"""Shared fixtures: fake upstreams and a real gateway, all real servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from gateway.config import Config
from gateway.keys import KeyRing
from gateway.lifecycle import Gateway, start
from tests.fakes import FakeOpenAI

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
def gateway(io_loop, start_gateway) -> Gateway:  # type: ignore[no-untyped-def]
    return io_loop.run_sync(start_gateway)


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
