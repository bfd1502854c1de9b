"""The real gateway (gateway.__main__.serve), instrumented for bench/soak.py; the gateway code is untouched.

    python bench/soak_gateway.py --samples FILE [llm-gateway flags: --host --port --keys --db --log-file]

Settings come from the environment and the flags exactly as for `python -m gateway`. On top:

- tracemalloc is started before the gateway is imported, so every allocation of the run is traced;
- every SAMPLE_EVERY_S seconds one JSON line is appended to FILE: time, RSS (VmRSS), open fds,
  asyncio tasks, event-loop lag over the window (a ticker every TICK_S seconds measures how late it
  wakes: n, p50/p99/max and the raw values in ms), the full (generation 2) garbage collections of the
  window with their pauses in ms (the usual cause of a lag spike), and tracemalloc's traced current/peak;
- SIGUSR1 is a mark: a full garbage collection (so cyclic garbage that merely awaits the collector is
  not counted as live), one line with "mark": N and the same figures taken then, and a tracemalloc
  snapshot dumped to FILE's directory as snapshot-N.pickle. The driver compares the snapshots itself,
  in its own process, so the comparison never weighs on the gateway. The snapshot's own objects leave
  their footprint in RSS (tens of MB under load): the driver takes its RSS reference after it.
"""

from __future__ import annotations

import tracemalloc

# Before the gateway's imports: their allocations (and everything after) are traced too. One frame per
# allocation unless PYTHONTRACEMALLOC=N asked for more (it starts tracing itself, before this line).
if not tracemalloc.is_tracing():
    tracemalloc.start()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gateway.__main__ as cli  # noqa: E402
from gateway.config import Config  # noqa: E402
from gateway.keys import KeyRing  # noqa: E402


SAMPLE_EVERY_S = 2.0
TICK_S = 0.05


def rss_kb() -> int:
    """VmRSS of this process in kB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds() -> int:
    """File descriptors open in this process (the listing's own fd included, as in every sample)."""
    return len(os.listdir("/proc/self/fd"))


class Sampler:
    """The loop-lag ticker, the periodic sample lines and the SIGUSR1 marks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.out = open(path, "a", buffering=1)
        self.lags_ms: list[float] = []
        self.gc_pauses_ms: list[float] = []  # full collections in this window
        self._gc_started = 0.0
        self.marks = 0
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the ticker and the sampler on the running loop; SIGUSR1 takes a mark."""
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._tick(), name="soak-ticker"),
                      loop.create_task(self._sample(), name="soak-sampler")]
        loop.add_signal_handler(signal.SIGUSR1, self.mark)
        gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        """Cancel the tasks and write a last line."""
        gc.callbacks.remove(self._on_gc)
        for task in self.tasks:
            task.cancel()
        self._write({"stopped": True, **self._figures()})
        self.out.close()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK_S
            await asyncio.sleep(TICK_S)
            self.lags_ms.append(max(0.0, loop.time() - due) * 1000)

    def _on_gc(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses_ms.append(round((time.perf_counter() - self._gc_started) * 1000, 1))

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            lags, self.lags_ms = self.lags_ms, []
            pauses, self.gc_pauses_ms = self.gc_pauses_ms, []
            self._write({**self._figures(), "lag": _summary(lags), "lag_ms": [round(v, 2) for v in lags],
                         "gc2_ms": pauses})

    def _figures(self) -> dict[str, float | int]:
        current, peak = tracemalloc.get_traced_memory()
        return {"t": round(time.time(), 3), "rss_kb": rss_kb(), "fds": open_fds(),
                "tasks": len(asyncio.all_tasks()), "traced_kb": current // 1024, "traced_peak_kb": peak // 1024}

    def mark(self) -> None:
        """Collect garbage, write the figures, then dump a tracemalloc snapshot next to the samples file."""
        self.marks += 1
        started = time.perf_counter()
        collected = gc.collect()
        gc_ms = round((time.perf_counter() - started) * 1000, 1)
        figures = {**self._figures(), "gc_collected": collected, "gc_ms": gc_ms}
        started = time.perf_counter()
        snapshot = tracemalloc.take_snapshot()
        snapshot.dump(str(self.path.parent / f"snapshot-{self.marks}.pickle"))
        del snapshot
        self._write({"mark": self.marks, **figures, "snapshot_ms": round((time.perf_counter() - started) * 1000, 1)})

    def _write(self, line: dict) -> None:
        self.out.write(json.dumps(line) + "\n")


def _summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
            "max_ms": round(ordered[-1], 2)}


def main(argv: list[str] | None = None) -> int:
    """Take --samples, then run the gateway's own CLI with its serve() wrapped by the sampler."""
    own = argparse.ArgumentParser(description="The gateway with soak instrumentation.", add_help=False)
    own.add_argument("--samples", type=Path, default=os.environ.get("SOAK_SAMPLES"),
                     help="where the JSON sample lines go (env SOAK_SAMPLES)")
    ours, rest = own.parse_known_args(argv)
    if ours.samples is None:
        print("soak_gateway: --samples FILE (or SOAK_SAMPLES) is required", file=sys.stderr)
        return 2
    serve = cli.serve

    async def serve_with_sampler(config: Config, keys: KeyRing) -> int:
        sampler = Sampler(ours.samples)
        sampler.start()
        try:
            return await serve(config, keys)
        finally:
            sampler.stop()

    cli.serve = serve_with_sampler  # the CLI looks serve() up when it runs: config, errors and exit codes stay its own
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main())
