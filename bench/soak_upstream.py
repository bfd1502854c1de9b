"""The fake upstreams of the test suite, in a process of their own, for bench/soak.py.

    python bench/soak_upstream.py

Runs tests/fakes.py's FakeOpenAI and tests/fake_anthropic.py's FakeAnthropic on 127.0.0.1 (scripted by
model name, see their docstrings), prints one JSON line {"openai": PORT, "anthropic": PORT}, and serves
until SIGTERM or SIGINT. What the fakes received is cleared every CLEAR_EVERY_S seconds, so a long run
does not grow their memory; on exit a line of counters goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_anthropic import FakeAnthropic  # noqa: E402
from tests.fakes import FakeOpenAI  # noqa: E402

CLEAR_EVERY_S = 5.0


async def serve() -> None:
    """Start both fakes, print their ports, clear their logs periodically until told to stop."""
    openai, anthropic = FakeOpenAI(), FakeAnthropic()
    print(json.dumps({"openai": openai.port, "anthropic": anthropic.port}), flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    received = 0
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), CLEAR_EVERY_S)
        except asyncio.TimeoutError:
            pass
        received += len(openai.received) + len(anthropic.log)
        openai.received.clear()
        anthropic.log.clear()
    state = openai.state
    print(json.dumps({"received": received, "openai_open_streams": state.open_streams,
                      "openai_closed_by_peer": state.closed_by_peer}), file=sys.stderr, flush=True)
    await openai.close()
    await anthropic.close()


if __name__ == "__main__":
    asyncio.run(serve())
