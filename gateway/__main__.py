"""CLI: read the config, run serve(). `llm-gateway --help` lists the flags; README lists every setting."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys

from . import __version__
from .config import SETTINGS, Config, ConfigError
from .keys import KeyRing, KeysFileError
from .lifecycle import Gateway, describe_start, start
from .listener import raise_open_file_limit
from .store import StoreUnavailable

log = logging.getLogger("gateway")

# CLI flags that win over the environment, by Config field name.
FLAGS = {"host": "--host", "port": "--port", "keys_file": "--keys", "database_path": "--db", "log_file": "--log-file"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llm-gateway", description="An OpenAI-compatible LLM gateway.")
    for field, flag in FLAGS.items():
        setting = SETTINGS[field]
        parser.add_argument(flag, dest=field, default=None, help=f"{setting.help} (env {setting.env})")
    parser.add_argument("--version", action="version", version=f"llm-gateway {__version__}")
    return parser.parse_args(argv)


async def serve(config: Config, keys: KeyRing) -> int:
    """Run until SIGTERM/SIGINT, then shut down gracefully; the exit code."""
    raise_open_file_limit()
    gateway = await start(config, keys, environ=os.environ)
    log.info("%s", describe_start(gateway))
    # What start made (modules, schemas, templates, metrics) lives as long as the process: frozen, it
    # is no longer walked by every full collection (measured: 18 ms -> 1.5 ms per pass).
    gc.collect()
    gc.freeze()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, reload_keys, gateway)
    await stopping.wait()
    log.info("shutting down: finishing %d in-flight requests", gateway.ctx.in_flight)
    await gateway.stop()
    log.info("stopped")
    return 0


def reload_keys(gateway: Gateway) -> None:
    """SIGHUP: reread keys.json; a bad file is logged and the old keys keep serving."""
    try:
        count = gateway.ctx.reload_keys()
    except KeysFileError as exc:
        log.error("keys not reloaded, the old keys keep serving: %s", exc)
        return
    log.info("keys reloaded: %d virtual keys", count)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `llm-gateway` and `python -m gateway`."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = Config.load(os.environ, {field: getattr(args, field) for field in FLAGS})
        if config.log_to_file:
            config.log_file.parent.mkdir(parents=True, exist_ok=True)
        keys = KeyRing.load(config.keys_file, os.environ)
        return asyncio.run(serve(config, keys))
    except (ConfigError, KeysFileError, StoreUnavailable) as exc:
        print(f"llm-gateway: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"llm-gateway: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
