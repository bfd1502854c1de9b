"""Soak run: a long mixed load on the real gateway, then check that it leaked nothing and lost no record.

    .venv/bin/python bench/soak.py             # 60 s warm-up + 10 min of load + drain + quiet: ~13 minutes
    .venv/bin/python bench/soak.py --quick     # a smoke check: 15 s warm-up + 30 s of load, ~2 minutes
    .venv/bin/python bench/soak.py --minutes 30 --streams 300 --rate 30 --keep-temp

What runs, all on 127.0.0.1, by hand (never by `make test`): bench/soak_upstream.py (the test suite's
fake OpenAI and Anthropic, in their own process) and bench/soak_gateway.py (the real gateway plus a
sampler of RSS, fds, asyncio tasks, event-loop lag and tracemalloc, and SIGUSR1 marks), with a temp
keys file, database and JSON log, quotas off, REQUEST_TIMEOUT 4 s so stalls end soon, retries on.
The load comes from a raw HTTP/1.1 client (Connection: close, so disconnects are exact): --streams
healthy streams of 5-20 s held open throughout, 4 slow-but-steady 90 s streams (1 chunk/s) re-issued
throughout, and --rate mixed requests/s: plain and streamed, translated (Anthropic key) and native
/v1/messages, upstream faults, invalid bodies (400), wrong keys (401), and client disconnects
mid-stream, before the first byte and during a non-stream request. Every request is tagged in its body.

Marks (a full gc, the figures, a tracemalloc snapshot): idle before the load (the baseline), at the end
of warm-up, and at the end, after the load stopped, in-flight requests drained and a quiet period let
the upstream pool idle-close its connections (up to 2 x POOL_IDLE_S). Checks, PASS/FAIL per line:
RSS growth after warm-up < 10 % (reference taken SETTLE_S after the warm-up mark, since the snapshot
itself leaves tens of MB in RSS); fds and tasks back to the baseline; every request sent is exactly one
row of `interactions` with the status the client saw (499 for a disconnect, the in-band 502/504 of a
stream that failed after its 200) and the recorder dropped nothing; every 90 s stream ended with
[DONE]; event-loop lag p99 < 100 ms (the marks' own pauses left out). On a shared 2-CPU machine the
lag figures are noisy. Writes bench/results/soak-<time>.json (everything, samples included) and
soak-<time>-tracemalloc.txt (end vs warm-up, top 10 by line), and exits 1 if a check fails. For deeper
tracebacks in the snapshots, run with PYTHONTRACEMALLOC=10 (slow: the lag check will fail).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.run import Proc, commit, cpu_seconds, free_port, machine, wait_for_port  # noqa: E402
from gateway.upstream import POOL_IDLE_S  # noqa: E402

RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
VK_OPENAI, VK_ANTHROPIC, VK_WRONG = "vk_soak_openai", "vk_soak_anthropic", "vk_soak_not_a_key"
CHAT, NATIVE, MODELS = "/v1/chat/completions", "/v1/messages", "/v1/models"
ENDPOINTS = {CHAT: "chat", NATIVE: "messages", MODELS: "models"}  # the rows' `endpoint`
REQUEST_TIMEOUT_S = 4  # the gateway's first-byte and stream idle timeout: stalls end in 504 quickly
SETTLE_S = 10  # after the warm-up mark (and its snapshot), before the RSS reference
TAG = re.compile(r"soak:(\d+)")
WRITER_COUNTERS = ("submitted", "written", "dropped", "failed", "queued")  # /health -> database.writer
STEADY = ("steady-20x250", "steady-25x400", "steady-40x250", "steady-30x400", "steady-40x400", "steady-50x400")
CLAUDE = ("claude-echo", "claude-slow")
FAULTS = ("fault-500", "fault-429", "fault-400", "html-502", "not-json", "redirect", "reset-before-headers",
          "reset-mid-body", "flaky-503")
STREAM_FAULTS = ("reset-mid-stream", "stall-stream", "no-done", "fault-500", "reset-before-headers")
INVALID = ("body-not-json", "messages-not-a-list", "model-missing")  # not models: the kind of 400
# kind: (virtual key, path, model or models to pick from, stream, disconnect: None, "early" or "mid").
KINDS: dict[str, tuple[str, str, str | tuple[str, ...], bool, str | None]] = {
    "stream": (VK_OPENAI, CHAT, STEADY, True, None),
    "long": (VK_OPENAI, CHAT, "", True, None),  # the model comes from the options
    "plain": (VK_OPENAI, CHAT, "gpt-4o-mini", False, None),
    "stream-short": (VK_OPENAI, CHAT, "gpt-4o-mini", True, None),
    "anthropic-plain": (VK_ANTHROPIC, CHAT, CLAUDE, False, None),
    "anthropic-stream": (VK_ANTHROPIC, CHAT, CLAUDE, True, None),
    "anthropic-fault": (VK_ANTHROPIC, CHAT, ("claude-error-500", "claude-error-529"), False, None),
    "anthropic-fault-stream": (VK_ANTHROPIC, CHAT, ("claude-stream-error", "claude-stream-cut"), True, None),
    "messages": (VK_ANTHROPIC, NATIVE, CLAUDE, False, None),
    "messages-stream": (VK_ANTHROPIC, NATIVE, CLAUDE, True, None),
    "fault": (VK_OPENAI, CHAT, FAULTS, False, None),
    "fault-stream": (VK_OPENAI, CHAT, STREAM_FAULTS, True, None),
    "hang-timeout": (VK_OPENAI, CHAT, "hang", False, None),
    "invalid": (VK_OPENAI, CHAT, INVALID, False, None),
    "wrong-key": (VK_WRONG, CHAT, "gpt-4o-mini", False, None),
    "models": (VK_OPENAI, MODELS, "", False, None),
    "disconnect-mid-stream": (VK_OPENAI, CHAT, "steady-20x200", True, "mid"),
    "disconnect-before-first-byte": (VK_OPENAI, CHAT, "hang", True, "early"),
    "disconnect-before-first-byte-native": (VK_ANTHROPIC, NATIVE, "claude-hang", True, "early"),
    "disconnect-non-stream": (VK_OPENAI, CHAT, "hang", False, "early"),
    "disconnect-non-stream-native": (VK_ANTHROPIC, NATIVE, "claude-hang", False, "early"),
}
# The mixed traffic: kind -> relative weight (at --rate requests per second in all).
MIXED = {"plain": 4, "stream-short": 2, "anthropic-plain": 2, "anthropic-stream": 2, "anthropic-fault": 0.5,
         "anthropic-fault-stream": 0.5, "messages": 1, "messages-stream": 1, "fault": 3, "fault-stream": 1.5,
         "hang-timeout": 0.2, "invalid": 1.5, "wrong-key": 1.5, "models": 0.5, "disconnect-mid-stream": 1,
         "disconnect-before-first-byte": 0.4, "disconnect-before-first-byte-native": 0.2,
         "disconnect-non-stream": 0.4, "disconnect-non-stream-native": 0.2}


# --- the requests --------------------------------------------------------------------------------

@dataclass
class Plan:
    """One request to send, and whether to walk away from it ("early": before the reply, "mid": mid-stream)."""

    kind: str
    model: str
    path: str
    raw: bytes
    stream: bool
    tagged: bool  # its row's `request` column holds our tag (a 401 or a GET records no body)
    timeout: float
    disconnect: str | None
    delay: float


@dataclass
class Entry:
    """What happened to one request, and the status its row should have."""

    id: int
    kind: str
    model: str
    endpoint: str
    tagged: bool
    sent: bool = False
    status: int | None = None
    outcome: str = "pending"  # reply, disconnected, timeout, error, not-sent
    expect: int | None = None
    done: bool = False  # a stream that ended with its terminator
    error: str | None = None
    seconds: float = 0.0


def http(method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> bytes:
    """A whole HTTP/1.1 request that asks the server to close the connection after replying."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def plan(kind: str, n: int, rng: random.Random, long_model: str, long_seconds: float) -> Plan:
    """The request of a kind, tagged `soak:<n>` in its body."""
    key, path, models, stream, disconnect = KINDS[kind]
    model = long_model if kind == "long" else models if isinstance(models, str) else rng.choice(models)
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"} if path == NATIVE else {"Authorization": f"Bearer {key}"}
    timeout = {"stream": 60.0, "long": long_seconds + 60}.get(kind, 30.0)
    delay = rng.uniform(0.2, 1.5)
    if path == MODELS:
        return Plan(kind, model, path, http("GET", path, headers), False, False, timeout, None, delay)
    tag = f"soak:{n} hello"
    body: dict = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": tag}]}
    if stream:
        body["stream"] = True
    raw = json.dumps(body).encode()
    if kind == "invalid":
        raw = {"body-not-json": f"this is not json {tag}".encode(),
               "messages-not-a-list": json.dumps({"model": "gpt-4o-mini", "messages": tag}).encode(),
               "model-missing": json.dumps({"messages": [{"role": "user", "content": tag}]}).encode()}[model]
    return Plan(kind, model, path, http("POST", path, headers, raw), stream, key != VK_WRONG, timeout, disconnect, delay)


def dechunk(raw: bytes) -> bytes:
    """The body of a chunked reply (as much as arrived)."""
    out, pos = bytearray(), 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            return bytes(out)
        try:
            size = int(raw[pos:end].split(b";")[0], 16)
        except ValueError:
            return bytes(out)
        if size == 0:
            return bytes(out)
        out += raw[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


def stream_outcome(body: bytes) -> tuple[bool, int]:
    """(terminator seen, the status the gateway records): an in-band error is its 502/504."""
    for event in body.split(b"\n\n"):
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            try:
                data = json.loads(line[5:])
            except ValueError:
                continue
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                return False, 504 if data["error"].get("type") == "timeout_error" else 502
    return b"data: [DONE]" in body or b"message_stop" in body, 200


async def send(port: int, p: Plan, entry: Entry) -> None:
    """Send one request on a fresh connection and read (or abandon) the reply, filling `entry`."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(p.raw)
        await writer.drain()
        entry.sent = True
        if p.disconnect == "early":
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), p.delay)
            except asyncio.TimeoutError:
                entry.outcome = "disconnected"
                return
        else:
            head = await reader.readuntil(b"\r\n\r\n")
        entry.status = int(head[9:12])
        body = bytearray()
        while data := await reader.read(65536):
            body += data
            if p.disconnect == "mid" and body.count(b"data:") >= 3:
                entry.outcome = "disconnected"
                return
        entry.outcome = "reply"
        if b"transfer-encoding: chunked" in head.lower():
            body = bytearray(dechunk(bytes(body)))
        entry.expect = entry.status
        if p.stream and entry.status == 200:
            entry.done, entry.expect = stream_outcome(bytes(body))
    finally:
        writer.close()


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the processes and their files ---------------------------------------------------------------

def read_lines(path: Path) -> list[dict]:
    """The complete JSON lines of a file (other lines, such as log lines, are skipped)."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.startswith("{") and line.endswith("\n")]


async def wait_until(check, what: str, proc: Proc, seconds: float = 30):  # type: ignore[no-untyped-def]
    """Poll `check()` until it returns something truthy; fail if the process exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (value := check()):
            return value
        if proc.popen.poll() is not None:
            raise SystemExit(f"soak: {proc.name} exited (code {proc.popen.returncode}) waiting for {what}:\n{proc.tail()}")
        await asyncio.sleep(0.2)
    raise SystemExit(f"soak: no {what} within {seconds:g} s")


async def get_json(port: int, path: str) -> dict:
    """GET an operator endpoint (/health, /metrics: not recorded as interactions)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(http("GET", path, {}))
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return json.loads(dechunk(body) if b"chunked" in head.lower() else body)


# --- the run -------------------------------------------------------------------------------------

class Soak:
    """The processes, the load and the ledger of every request sent."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.samples = tmp / "samples.jsonl"
        self.rng = random.Random(args.seed)
        self.ids = itertools.count(1)
        self.ledger: list[Entry] = []
        self.in_flight = 0
        self.marks: dict[str, dict] = {}
        self.procs: list[Proc] = []

    async def start(self) -> None:
        """Start the fakes, then the instrumented gateway in front of them; return once it listens."""
        py = sys.executable
        up = Proc("upstream", [py, "bench/soak_upstream.py"], self.tmp / "upstream.log", None)
        self.procs.append(up)
        ports = (await wait_until(lambda: read_lines(up.log), "the fakes' ports", up))[0]
        keys = self.tmp / "keys.json"
        keys.write_text(json.dumps({"virtual_keys": {
            VK_OPENAI: {"name": "soak-openai", "provider": "openai", "api_key": "fake.openai.key.for.the.soak"},
            VK_ANTHROPIC: {"name": "soak-anthropic", "provider": "anthropic", "api_key": "fake.anthropic.key.for.the.soak",
                           "base_url": f"http://{HOST}:{ports['anthropic']}"}}}))
        self.port = free_port()
        env = dict(os.environ, LOG_TO_FILE="true", QUOTA_ENABLED="false", MAX_UPSTREAM_CONCURRENCY="2000",
                   REQUEST_TIMEOUT=str(REQUEST_TIMEOUT_S), OPENAI_BASE_URL=f"http://{HOST}:{ports['openai']}/v1",
                   ANTHROPIC_BASE_URL=f"http://{HOST}:{ports['anthropic']}", GATEWAY_ADMIN_KEY="soak-admin-key-not-secret")
        self.gateway = Proc("gateway", [py, "bench/soak_gateway.py", "--samples", str(self.samples), "--host", HOST,
                                        "--port", str(self.port), "--keys", str(keys), "--db", str(self.tmp / "gateway.db"),
                                        "--log-file", str(self.tmp / "interactions.jsonl")],
                            self.tmp / "gateway.log", None, env)
        self.procs.append(self.gateway)
        await wait_for_port(self.gateway, self.port)
        log(f"gateway pid {self.gateway.pid} on {HOST}:{self.port}, fakes on :{ports['openai']} (openai) "
            f":{ports['anthropic']} (anthropic); files in {self.tmp}")

    async def mark(self, name: str) -> dict:
        """SIGUSR1 the gateway and wait for its mark line (figures, then a tracemalloc snapshot)."""
        number = len(self.marks) + 1
        self.gateway.popen.send_signal(signal.SIGUSR1)
        line = await wait_until(lambda: next((s for s in read_lines(self.samples) if s.get("mark") == number), None),
                                f"mark {number}", self.gateway, 120)
        self.marks[name] = line
        return line

    async def issue(self, kind: str) -> None:
        """Send one request of a kind and record what happened."""
        n = next(self.ids)
        p = plan(kind, n, self.rng, self.args.long_model, self.args.long_seconds)
        entry = Entry(n, kind, p.model, ENDPOINTS[p.path], p.tagged)
        self.ledger.append(entry)
        self.in_flight += 1
        started = time.monotonic()
        try:
            await asyncio.wait_for(send(self.port, p, entry), p.timeout)
        except asyncio.TimeoutError:
            entry.outcome, entry.error = "timeout", f"no end of reply within {p.timeout:g} s"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            entry.outcome, entry.error = ("error" if entry.sent else "not-sent"), f"{type(exc).__name__}: {exc}"
        finally:
            self.in_flight -= 1
            entry.seconds = round(time.monotonic() - started, 3)
        if entry.outcome in ("disconnected", "timeout"):
            entry.expect = 499  # the gateway saw its client go away

    async def load(self, seconds: float, warmup: float) -> None:
        """Hold the streams, the long streams and the mixed rate for `seconds`, then drain; mark the warm-up."""
        args, loop = self.args, asyncio.get_running_loop()
        end = loop.time() + seconds
        self.load_window = (time.time(), time.time() + seconds)

        async def held(i: int) -> None:
            await asyncio.sleep(i * 5.0 / max(1, args.streams))  # staggered, so they do not end in step
            while loop.time() < end:
                await self.issue("stream")

        async def long() -> None:
            while loop.time() + args.long_seconds + 10 < end:
                await self.issue("long")

        async def mixed() -> None:
            kinds, weights, spawned = list(MIXED), list(MIXED.values()), set()
            while loop.time() < end:
                task = asyncio.ensure_future(self.issue(self.rng.choices(kinds, weights)[0]))
                spawned.add(task)
                task.add_done_callback(spawned.discard)
                await asyncio.sleep(self.rng.expovariate(args.rate))
            await asyncio.gather(*spawned)

        async def warm() -> None:
            await asyncio.sleep(warmup)
            line = await self.mark("warmup")
            log(f"end of warm-up: RSS {line['rss_kb'] / 1024:.1f} MB, traced {line['traced_kb'] / 1024:.1f} MB "
                f"(the snapshot took {line['snapshot_ms']:.0f} ms)")

        async def progress() -> None:
            while True:
                await asyncio.sleep(args.progress)
                latest = next((s for s in reversed(read_lines(self.samples)) if "lag" in s), {})
                log(f"{time.time() - self.load_window[0]:5.0f} s: {len(self.ledger)} sent, {self.in_flight} in flight; "
                    f"gateway RSS {latest.get('rss_kb', 0) / 1024:.1f} MB, fds {latest.get('fds')}, "
                    f"tasks {latest.get('tasks')}, lag p99 {latest.get('lag', {}).get('p99_ms')} ms")

        reporter = asyncio.ensure_future(progress())
        cpu = self.cpu()
        workers = [held(i) for i in range(args.streams)] + [long() for _ in range(args.long_streams)]
        await asyncio.gather(mixed(), warm(), *workers)  # each worker ends with its last reply: a drain
        reporter.cancel()
        seconds = time.time() - self.load_window[0]
        self.cpu_pct = {name: round((now - cpu[name]) * 100 / seconds) for name, now in self.cpu().items()}

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the gateway, the fakes and this driver."""
        return {"gateway": cpu_seconds(self.gateway.pid), "upstream": cpu_seconds(self.procs[0].pid),
                "driver": time.process_time()}

    async def quiet(self, baseline: dict, longest: float) -> float:
        """Wait until fds and tasks are back at baseline (two samples running) or `longest` s; the wait."""
        started = time.monotonic()
        while time.monotonic() - started < longest:
            await asyncio.sleep(2)
            recent = [s for s in read_lines(self.samples) if "lag" in s and s["t"] > time.time() - 4.5][-2:]
            if time.monotonic() - started > 5 and len(recent) == 2 and all(
                    s["fds"] <= baseline["fds"] and s["tasks"] <= baseline["tasks"] for s in recent):
                break
        return round(time.monotonic() - started, 1)


# --- the checks ----------------------------------------------------------------------------------

def account(ledger: list[Entry], rows: list[dict]) -> dict:
    """Match every request sent to its row: tagged ones by tag and status, the rest by (endpoint, status) count."""
    by_tag: dict[int, list[dict]] = defaultdict(list)
    untagged: Counter = Counter()
    for row in rows:
        found = TAG.search(row["request"] or "")
        if found:
            by_tag[int(found.group(1))].append(row)
        else:
            untagged[(row["endpoint"], row["status"])] += 1
    table: dict[tuple[str, str], dict] = {}
    problems: list[dict] = []
    for e in ledger:
        if not e.sent:
            continue
        cell = table.setdefault((e.kind, e.model), {"sent": 0, "rows": 0, "client": Counter(), "recorded": Counter()})
        cell["sent"] += 1
        cell["client"][str(e.status) if e.outcome == "reply" else e.outcome] += 1
        if e.tagged:
            found_rows = by_tag.pop(e.id, [])
        else:
            found_rows = [{"status": e.expect}] if untagged[(e.endpoint, e.expect)] > 0 else []
            untagged[(e.endpoint, e.expect)] -= len(found_rows)
        cell["rows"] += len(found_rows)
        cell["recorded"].update(str(r["status"]) for r in found_rows)
        if len(found_rows) != 1:
            problems.append({"id": e.id, "kind": e.kind, "model": e.model, "problem": f"{len(found_rows)} rows",
                             "client": e.outcome, "status": e.status})
        elif e.expect is not None and found_rows[0]["status"] != e.expect:
            problems.append({"id": e.id, "kind": e.kind, "model": e.model, "problem": "status",
                             "expected": e.expect, "recorded": found_rows[0]["status"], "client": e.outcome,
                             "error_type": found_rows[0].get("error_type"), "seconds": e.seconds})
    for tag, extra in by_tag.items():
        problems.append({"id": tag, "problem": f"{len(extra)} row(s) of a request not sent"})
    for (endpoint, status), left in untagged.items():
        if left:
            problems.append({"endpoint": endpoint, "status": status, "problem": f"{left} untagged row(s) unmatched"})
    sent = sum(1 for e in ledger if e.sent)
    return {"sent": sent, "not_sent": len(ledger) - sent, "rows": len(rows), "problems": problems,
            "table": [{"kind": k, "model": m, **{n: dict(v) if isinstance(v, Counter) else v for n, v in c.items()}}
                      for (k, m), c in sorted(table.items())]}


def spread(values: list[float]) -> dict:
    """n, p50, p99 and max of a list of milliseconds (nearest rank)."""
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
    return {"n": len(ordered), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(ordered[-1], 2)}


def loop_lag(samples: list[dict], marks: dict[str, dict], window: tuple[float, float]) -> dict:
    """Lag over the load; the window holding a mark (a full gc and a snapshot: our pause) is reported apart."""
    windows = [s for s in samples if "lag_ms" in s and window[0] < s["t"] <= window[1]]
    paused = [next((s for s in windows if s["t"] > m["t"]), None) for m in marks.values()]
    kept = [s for s in windows if s not in paused]
    worst = max(kept, key=lambda s: s["lag"]["max_ms"] or 0, default={})
    late = [(s, v) for s in kept for v in s["lag_ms"] if v > 100]
    return {**spread([v for s in kept for v in s["lag_ms"]]), "worst_window": worst.get("lag"),
            "mark_windows_max_ms": [s["lag"]["max_ms"] for s in paused if s],
            "full_gc": spread([v for s in kept for v in s.get("gc2_ms", [])]),
            "ticks_over_100_ms": len(late), "of_them_in_a_window_with_a_full_gc": sum(1 for s, _ in late if s.get("gc2_ms"))}


def memory(samples: list[dict], marks: dict[str, dict], window: tuple[float, float]) -> dict:
    """RSS after warm-up vs at the end of the load and after the quiet period; traced memory at the marks."""
    warm, final = marks["warmup"], marks["final"]
    after = [s for s in samples if "lag" in s and warm["t"] < s["t"] <= window[1]] or [final]
    # The reference comes SETTLE_S after the warm-up mark: its snapshot's footprint is then in both figures.
    ref = next((s for s in after if s["t"] >= warm["t"] + SETTLE_S), after[0])
    trend = [s for s in after if s["t"] >= ref["t"]]
    mt, mr = sum(s["t"] for s in trend) / len(trend), sum(s["rss_kb"] for s in trend) / len(trend)
    den = sum((s["t"] - mt) ** 2 for s in trend)
    slope = sum((s["t"] - mt) * (s["rss_kb"] - mr) for s in trend) / den * 60 if den else 0.0  # kB/min
    worst = max(after[-1]["rss_kb"], final["rss_kb"])
    return {"rss_at_warmup_mark_kb": warm["rss_kb"], "rss_reference_kb": ref["rss_kb"],
            "rss_end_of_load_kb": after[-1]["rss_kb"], "rss_final_kb": final["rss_kb"],
            "rss_growth_pct": round((worst - ref["rss_kb"]) * 100 / ref["rss_kb"], 2),
            "rss_trend_kb_per_min": round(slope, 1),
            "rss_peak_kb": max(s["rss_kb"] for s in samples if "rss_kb" in s), "traced_warmup_kb": warm["traced_kb"],
            "traced_end_of_load_kb": after[-1]["traced_kb"], "traced_final_kb": final["traced_kb"]}


def tracemalloc_top(tmp: Path, old: int, new: int, limit: int = 10) -> dict:
    """Snapshot `new` against snapshot `old` by line: the top `limit` by size change, and the top growth."""
    skip = [tracemalloc.Filter(False, pattern) for pattern in
            (tracemalloc.__file__, "<frozen importlib._bootstrap*>", "<unknown>", "*/bench/soak_gateway.py")]
    load = lambda n: tracemalloc.Snapshot.load(str(tmp / f"snapshot-{n}.pickle")).filter_traces(skip)  # noqa: E731
    stats = load(new).compare_to(load(old), "lineno")
    short = lambda s: str(s).replace(str(ROOT) + "/", "").replace(sys.base_prefix + "/", "")  # noqa: E731
    grown = sorted((s for s in stats if s.size_diff > 0), key=lambda s: s.size_diff, reverse=True)
    return {"top": [short(s) for s in stats[:limit]], "growth": [short(s) for s in grown[:limit]]}


def tracemalloc_text(top: dict) -> str:
    """The comparison as text: the top 10 lines by size change, then the top 10 by growth."""
    return ("Snapshot at the end (after the quiet period) vs at the end of warm-up, both after a full gc.\n\n"
            "Top 10 by size change (lineno):\n" + "\n".join(top["top"])
            + "\n\nTop 10 by growth (lineno):\n" + "\n".join(top["growth"]) + "\n")


def criteria(report: dict) -> list[tuple[str, bool, str]]:
    """(name, passed, detail) for each check."""
    mem, fds, tasks, acc, writer = report["memory"], report["fds"], report["tasks"], report["accounting"], report["writer"]
    longs, lag = report["long_streams"], report["loop_lag"]
    return [
        ("RSS growth after warm-up < 10 %", mem["rss_growth_pct"] < 10,
         f"{mem['rss_reference_kb'] / 1024:.1f} MB -> {max(mem['rss_end_of_load_kb'], mem['rss_final_kb']) / 1024:.1f} MB "
         f"({mem['rss_growth_pct']:+.1f} %)"),
        ("fds back to baseline", fds["final"] <= fds["baseline"], f"{fds['baseline']} -> {fds['final']}"),
        ("tasks back to baseline", tasks["final"] <= tasks["baseline"], f"{tasks['baseline']} -> {tasks['final']}"),
        ("every request is exactly one row", not acc["problems"] and acc["rows"] == acc["sent"],
         f"{acc['rows']} rows for {acc['sent']} sent, {len(acc['problems'])} mismatches"),
        ("recorder dropped and failed nothing", not writer.get("dropped") and not writer.get("failed")
         and writer.get("submitted") == acc["rows"],
         ", ".join(f"{k} {writer.get(k)}" for k in WRITER_COUNTERS[:4])),
        ("all long streams complete", longs["total"] > 0 and longs["complete"] == longs["total"],
         f"{longs['complete']}/{longs['total']} ended with [DONE]"),
        ("loop lag p99 < 100 ms", lag["p99_ms"] is not None and lag["p99_ms"] < 100,
         f"p50 {lag['p50_ms']} / p99 {lag['p99_ms']} / max {lag['max_ms']} ms"),
        ("gateway exits 0 on SIGTERM", report["gateway_exit"] == 0, f"exit code {report['gateway_exit']}"),
    ]


async def run(args: argparse.Namespace, tmp: Path) -> dict:
    """The whole soak: start, baseline, load, drain, quiet, final figures, shutdown; the report."""
    soak = Soak(args, tmp)
    loadavg = [os.getloadavg()[0]]
    try:
        await soak.start()
        await asyncio.sleep(3)
        baseline = await soak.mark("baseline")
        log(f"idle baseline: fds {baseline['fds']}, tasks {baseline['tasks']}, RSS {baseline['rss_kb'] / 1024:.1f} MB")
        await soak.load(args.warmup + args.minutes * 60, args.warmup)
        log(f"load stopped and drained; quiet until fds and tasks are back (at most {2 * POOL_IDLE_S + 10:g} s)")
        quiet_s = await soak.quiet(baseline, 2 * POOL_IDLE_S + 10)
        final = await soak.mark("final")
        health, metrics = await get_json(soak.port, "/health"), await get_json(soak.port, "/metrics")
        soak.gateway.stop()  # SIGTERM: a graceful shutdown flushes the recorder
        gateway_exit = soak.gateway.popen.returncode
    finally:
        for proc in reversed(soak.procs):
            proc.stop()
    loadavg.append(os.getloadavg()[0])
    with sqlite3.connect(tmp / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT endpoint, model, status, error_type, request FROM interactions")]
    samples, window, ledger = read_lines(soak.samples), soak.load_window, soak.ledger
    longs = [e for e in ledger if e.kind == "long"]
    chunks = sum(int(e.model[7:].partition("x")[0]) for e in ledger if e.kind in ("stream", "long") and e.done)
    gateway_log = soak.gateway.log.read_text(errors="replace").splitlines()
    report = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(window[0])), "commit": commit(),
        "machine": machine(), "settings": vars(args), "loadavg_1min_before_after": loadavg,
        "requests_per_s": round(len(ledger) / (window[1] - window[0]), 1),
        "steady_chunks_per_s": round(chunks / (window[1] - window[0])), "cpu_pct_of_one_core": soak.cpu_pct,
        **{figure: {"baseline": soak.marks["baseline"][figure], "under_load": soak.marks["warmup"][figure],
                    "final": soak.marks["final"][figure]} for figure in ("fds", "tasks")},
        "quiet_s": quiet_s, "marks": soak.marks, "memory": memory(samples, soak.marks, window),
        "loop_lag": loop_lag(samples, soak.marks, window),
        "long_streams": {"model": args.long_model, "total": len(longs),
                         "complete": sum(1 for e in longs if e.done and e.status == 200),
                         "seconds": [e.seconds for e in longs]},
        "accounting": account(ledger, rows), "writer": health.get("database", {}).get("writer", {}),
        "health_status": health.get("status"), "metrics_total_requests": metrics.get("total_requests"),
        "gateway_exit": gateway_exit,
        "client_errors": dict(Counter(f"{e.kind}: {e.outcome}: {e.error}" for e in ledger if e.error).most_common()),
        "gateway_log": {level: sum(f" {level} " in line for line in gateway_log) for level in ("ERROR", "WARNING")}
        | {"tracebacks": sum(line.startswith("Traceback") for line in gateway_log),
           "first_errors": [line[:300] for line in gateway_log if " ERROR " in line or line.startswith("Traceback")][:5]},
        "upstream": next(iter(read_lines(soak.procs[0].log)[1:]), {}),
        "tracemalloc": tracemalloc_top(tmp, 2, 3), "samples": samples,
    }
    report["criteria"] = [{"name": n, "passed": ok, "detail": d} for n, ok, d in criteria(report)]
    return report


def summary(r: dict) -> str:
    """The printed summary."""
    acc, mem, lag, settings = r["accounting"], r["memory"], r["loop_lag"], r["settings"]
    mb = lambda kb: f"{kb / 1024:.1f} MB"  # noqa: E731
    out = [f"Soak: {settings['minutes']:g} min of load after {settings['warmup']:g} s of warm-up; {settings['streams']} held "
           f"streams, {settings['long_streams']} x {settings['long_model']}, {settings['rate']:g}/s mixed: "
           f"{r['requests_per_s']} requests/s, {r['steady_chunks_per_s']} stream chunks/s; commit {r['commit']}",
           f"CPU over load and drain, % of one core: {r['cpu_pct_of_one_core']}; load average "
           f"{r['loadavg_1min_before_after'][0]:.2f} before, {r['loadavg_1min_before_after'][1]:.2f} after (2 CPUs, shared)",
           "", f"{'kind':<36}{'model':<22}{'sent':>6}{'rows':>6}  client saw -> recorded"]
    for c in acc["table"]:
        seen, rec = (" ".join(f"{k}:{v}" for k, v in sorted(c[x].items())) for x in ("client", "recorded"))
        out.append(f"{c['kind']:<36}{c['model'][:21]:<22}{c['sent']:>6}{c['rows']:>6}  {seen} -> {rec}")
    out += [f"{'total sent':<58}{acc['sent']:>6}{acc['rows']:>6}  ({acc['not_sent']} not sent)"]
    out += [f"  mismatch: {json.dumps(p)}" for p in acc["problems"][:20]]
    out += ["", f"RSS: {mb(mem['rss_reference_kb'])} {SETTLE_S} s after the warm-up mark ({mb(mem['rss_at_warmup_mark_kb'])} "
                f"before its snapshot), {mb(mem['rss_end_of_load_kb'])} at end of load, {mb(mem['rss_final_kb'])} after the "
                f"quiet period: {mem['rss_growth_pct']:+.1f} %; trend after warm-up "
                f"{mem['rss_trend_kb_per_min'] / 1024:+.2f} MB/min; peak {mb(mem['rss_peak_kb'])}",
            f"tracemalloc traced (after a full gc at each mark): {mb(mem['traced_warmup_kb'])} at end of warm-up, "
            f"{mb(mem['traced_final_kb'])} at the end ({mb(mem['traced_end_of_load_kb'])} at end of load, no gc)",
            "  top growth, end vs warm-up, by line:"] + [f"    {line}" for line in r["tracemalloc"]["growth"]]
    out += [f"fds: {r['fds']['baseline']} idle baseline, {r['fds']['under_load']} under load, {r['fds']['final']} after "
            f"{r['quiet_s']:g} s quiet; asyncio tasks: {r['tasks']['baseline']}, {r['tasks']['under_load']}, "
            f"{r['tasks']['final']}",
            f"event-loop lag over the load ({lag['n']} ticks of 50 ms): p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms, max "
            f"{lag['max_ms']} ms; worst 2 s window {lag['worst_window']}; left out: the windows of the marks' gc + snapshot, "
            f"max {lag['mark_windows_max_ms']} ms. Other work on this machine shows up here: noisy.",
            f"full (gen 2) garbage collections during the load: {lag['full_gc']['n']}, pause p50 {lag['full_gc']['p50_ms']} "
            f"ms, max {lag['full_gc']['max_ms']} ms (tracemalloc on); ticks over 100 ms late: {lag['ticks_over_100_ms']}, "
            f"{lag['of_them_in_a_window_with_a_full_gc']} of them in a 2 s window with a full collection",
            f"long streams ({r['long_streams']['model']}): {r['long_streams']['complete']}/{r['long_streams']['total']} "
            f"complete, {min(r['long_streams']['seconds'], default=0):g}-{max(r['long_streams']['seconds'], default=0):g} s",
            f"recorder: {json.dumps({k: r['writer'].get(k) for k in WRITER_COUNTERS})}; "
            f"/metrics total_requests {r['metrics_total_requests']}; /health {r['health_status']}",
            f"errors seen: client {sum(r['client_errors'].values())}; gateway log {r['gateway_log']['ERROR']} ERROR, "
            f"{r['gateway_log']['WARNING']} WARNING, {r['gateway_log']['tracebacks']} tracebacks; fakes {r['upstream']}"]
    out += [f"  {n}x {e[:200]}" for e, n in list(r["client_errors"].items())[:8]]
    out += [f"  {line}" for line in r["gateway_log"]["first_errors"]]
    out += [""] + [f"{'PASS' if c['passed'] else 'FAIL'}  {c['name']}: {c['detail']}" for c in r["criteria"]]
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Soak the gateway: long mixed load, then leaks and lost records.")
    parser.add_argument("--minutes", type=float, default=10, help="minutes of load after warm-up (default 10)")
    parser.add_argument("--streams", type=int, default=200, help="healthy streams held open throughout (default 200)")
    parser.add_argument("--rate", type=float, default=20, help="mixed requests per second (default 20)")
    parser.add_argument("--quick", action="store_true",
                        help="a ~2-minute smoke check: 15 s warm-up, 30 s of load, 30 s long streams")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (database, logs, samples, snapshots)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for the traffic mix")
    args = parser.parse_args(argv)
    args.warmup, args.progress, args.long_streams, args.long_seconds = 60.0, 30.0, 4, 90
    if args.quick:
        args.minutes, args.warmup, args.progress, args.long_seconds = 0.5, 15.0, 10.0, 30
    args.long_model = f"steady-{args.long_seconds}x1000"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    started = time.monotonic()
    try:
        report = asyncio.run(run(args, tmp))
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_temp:
            print(f"soak: temp files kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"soak-{stamp}.json"
    out.write_text(json.dumps(report, indent=1, default=list))
    (RESULTS / f"soak-{stamp}-tracemalloc.txt").write_text(tracemalloc_text(report["tracemalloc"]))
    print()
    print(summary(report))
    print(f"\n{report['elapsed_s']:g} s; results written to {out.relative_to(ROOT)}")
    return 0 if all(c["passed"] for c in report["criteria"]) else 1


if __name__ == "__main__":
    sys.exit(main())
