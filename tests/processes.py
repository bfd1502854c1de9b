"""The gateway as a real process (`python -m gateway`), for what only a process has: signals and exit codes."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class GatewayProcess:
    """A running `python -m gateway`; its stderr is collected line by line as it arrives."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read_stderr())
        self.port = 0

    @classmethod
    async def start(cls, keys: Path, db: Path, openai_base: str, open_files: int | None = None,
                    **settings: str) -> "GatewayProcess":
        """Start it (with an open-file limit, soft and hard, if given) and wait until it listens."""
        env = {**os.environ, "KEYS_FILE_PATH": str(keys), "DATABASE_PATH": str(db), "SERVER_HOST": "127.0.0.1",
               "SERVER_PORT": "0", "OPENAI_BASE_URL": openai_base, "LOG_TO_FILE": "true",
               "LOG_FILE_PATH": str(db.with_suffix(".log")), **settings}
        limit = None if open_files is None else (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files)))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", cwd=ROOT, env=env, preexec_fn=limit,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        gateway = cls(process)
        line = await gateway.wait_for_line("listening on")
        gateway.port = int(line.split("http://127.0.0.1:")[1].split()[0])
        return gateway

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace"))
            self._new_line.set()
        self._new_line.set()

    async def wait_for_line(self, text: str, after: int = 0, timeout: float = 15) -> str:
        """The first stderr line from index `after` on that contains `text`."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[after:]:
                if text in line:
                    return line
            if self._reader.done():
                raise AssertionError(f"the gateway exited before logging {text!r}:\n{''.join(self.lines)}")
            self._new_line.clear()
            await asyncio.wait_for(self._new_line.wait(), max(0.01, deadline - time.monotonic()))

    async def stop(self, signum: int) -> int:
        """Send `signum`, wait for the exit (at most 15 s); the exit code."""
        self.process.send_signal(signum)
        code = await asyncio.wait_for(self.process.wait(), 15)
        await self._reader
        return code
