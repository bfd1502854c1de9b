"""Overhead benchmark: the gateway in front of the mock provider, against the mock alone, on 127.0.0.1.

    python bench/run.py                      # the whole matrix, ~3 minutes
    python bench/run.py --duration 10        # longer cells
    python bench/run.py --rss-run            # only the 60 s memory-flatness run at concurrency 64
    python bench/run.py --compare OLD.json NEW.json

What it does: starts examples/mock_provider.py and the gateway (SQLite and the JSON log on, quotas off,
all files in a temp dir), pins the gateway to CPU 0 and the load generator and the mock to CPU 1,
then, for the openai key and the anthropic key (translated), non-streamed and streamed, at each
concurrency, runs wrk against the gateway and the same request directly against the mock. It reports
requests/s, latency p50/p90/p99, errors, the latency the gateway adds, the gateway's CPU time per
request (/proc/<pid>/stat) and its peak RSS (VmHWM). wrk cannot see inside a stream, so a small
asyncio client measures the time to the first streamed byte, and checks against a second, slow mock
that chunks reach the client as they are produced rather than in one burst at the end.

Results go to bench/results/<timestamp>.json (git-ignored); --compare prints two runs side by side.
See bench/README.md for how to read the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOCK = ROOT / "examples" / "mock_provider.py"
LUA = Path(__file__).resolve().parent / "post.lua"
RESULTS = Path(__file__).resolve().parent / "results"
GATEWAY_CPU, LOAD_CPU = 0, 1
SLOW_DELAY_MS = 20  # the slow mock's pause between chunks, for the incremental-arrival check
PROMPT = [{"role": "user", "content": "Say hello to the benchmark."}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
KEYS = {"openai": "vk_bench_openai", "anthropic": "vk_bench_anthropic"}


# --- the requests ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One way to send one kind of request: where, with which headers, which body."""

    port: int
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def raw(self) -> bytes:
        """The whole HTTP/1.1 request."""
        lines = [f"POST {self.path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Content-Type: application/json",
                 f"Content-Length: {len(self.body)}"] + [f"{n}: {v}" for n, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def gateway_target(port: int, provider: str, stream: bool, slow: bool = False) -> Target:
    """An OpenAI-format chat request to the gateway with the provider's virtual key."""
    body = {"model": MODELS[provider], "messages": PROMPT, "max_tokens": 64}
    if stream:
        body["stream"] = True
    key = KEYS[provider] + ("_slow" if slow else "")
    return Target(port, "/v1/chat/completions", (("Authorization", f"Bearer {key}"),), json.dumps(body).encode())


def direct_target(port: int, provider: str, stream: bool) -> Target:
    """The equivalent request straight to the mock, in the provider's own format."""
    if provider == "openai":
        body = {"model": MODELS[provider], "messages": PROMPT, "max_tokens": 64}
        headers = (("Authorization", "Bearer sk-bench"),)
        path = "/v1/chat/completions"
    else:
        body = {"model": MODELS[provider], "max_tokens": 64, "messages": PROMPT}
        headers = (("x-api-key", "sk-ant-bench"), ("anthropic-version", "2023-06-01"))
        path = "/v1/messages"
    if stream:
        body["stream"] = True
    return Target(port, path, headers, json.dumps(body).encode())


# --- a small keep-alive HTTP/1.1 client that times every piece of the body ---------------------------

@dataclass
class Sample:
    """One reply: status, seconds from sending to the first body byte and to the end, and each read."""

    status: int
    first_byte: float
    total: float
    reads: list[float]
    body: bytes


class Client:
    """One keep-alive connection; replies with Content-Length or chunked transfer encoding."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def fetch(self, request: bytes) -> Sample:
        """Send one request and read the whole reply."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        reader = self.reader
        assert reader is not None
        started = time.perf_counter()
        self.writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in head.decode("latin-1").split("\r\n")[1:] if line)}
        reads: list[float] = []
        parts: list[bytes] = []
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
                reads.append(time.perf_counter() - started)
        else:
            length = int(headers.get("content-length", "0"))
            parts.append(await reader.readexactly(length) if length else b"")
            reads.append(time.perf_counter() - started)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Sample(status, reads[0], reads[-1], reads, b"".join(parts))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def fetch_once(target: Target) -> Sample:
    """One request on a fresh connection."""
    client = Client(target.port)
    try:
        return await asyncio.wait_for(client.fetch(target.raw()), 30)
    finally:
        client.close()


async def ttfb_run(target: Target, concurrency: int, seconds: float) -> dict:
    """Time to first byte of streamed replies, `concurrency` clients for `seconds`."""
    request = target.raw()
    firsts: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        client = Client(target.port)
        try:
            while time.perf_counter() < deadline:
                try:
                    sample = await asyncio.wait_for(client.fetch(request), 30)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                    errors += 1
                    client.close()
                    continue
                if sample.status == 200:
                    firsts.append(sample.first_byte * 1000)
                else:
                    errors += 1
        finally:
            client.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"requests": len(firsts), "errors": errors, **percentiles(firsts)}


async def arrival_check(target: Target, chunks: int) -> dict:
    """Whether a slow stream's chunks reach the client spread out over time, as the mock sends them."""
    sample = await fetch_once(target)
    gaps = [b - a for a, b in zip(sample.reads, sample.reads[1:])]
    # The slow mock pauses SLOW_DELAY_MS before each content chunk: each pause should show as a gap.
    bursts = 1 + sum(1 for gap in gaps if gap * 1000 > SLOW_DELAY_MS / 2)
    return {"status": sample.status, "bursts": bursts, "expected_bursts": chunks + 1,
            "incremental": sample.status == 200 and bursts >= chunks,
            "spread_ms": round((sample.reads[-1] - sample.reads[0]) * 1000, 1)}


def percentiles(values_ms: list[float]) -> dict:
    """p50/p90/p99 of a list of milliseconds (nearest rank)."""
    if not values_ms:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None}
    ordered = sorted(values_ms)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)  # noqa: E731
    return {"p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99)}


def reply_ok(sample: Sample, stream: bool) -> bool:
    """A 200 whose stream (if any) ran to its end marker."""
    if sample.status != 200:
        return False
    return not stream or b"[DONE]" in sample.body or b"message_stop" in sample.body


# --- processes -------------------------------------------------------------------------------------

class Proc:
    """A child process (optionally pinned to a CPU) with its output in a file."""

    def __init__(self, name: str, argv: list[str], log: Path, cpu: int | None, env: dict[str, str] | None = None) -> None:
        prefix = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self.name, self.log = name, log
        with open(log, "wb") as out:
            # Own session: a Ctrl-C on the benchmark reaches us, and we stop the children in order.
            self.popen = subprocess.Popen(prefix + argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                          cwd=ROOT, start_new_session=True)
        self.pid = self.popen.pid  # taskset execs the program, so this is the program's pid

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for_port(proc: Proc, port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise SystemExit(f"{proc.name} exited at start (code {proc.popen.returncode}):\n{proc.tail()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit(f"{proc.name} did not listen on port {port} within {seconds:g} s:\n{proc.tail()}")


TICK = os.sysconf("SC_CLK_TCK")


def _ticks(stat_path: str) -> int:
    stat = Path(stat_path).read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) in seconds."""
    return _ticks(f"/proc/{pid}/stat") / TICK


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds of the gateway (all threads, and its event-loop thread) and of its whole CPU."""

    process: float
    main_thread: float
    cpu_busy: float

    @classmethod
    def take(cls, pid: int, cpu: int) -> "CpuSnapshot":
        busy = 0.0
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                busy = (sum(v[:8]) - v[3] - v[4]) / TICK  # all but idle and iowait
        return cls(cpu_seconds(pid), _ticks(f"/proc/{pid}/task/{pid}/stat") / TICK, busy)


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in kB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


async def busy_share(cpu: int | None, seconds: float = 1.0) -> float:
    """How busy a CPU (or the whole machine, for None) is over `seconds`, in percent."""
    def busy() -> tuple[int, int]:
        name = "cpu " if cpu is None else f"cpu{cpu} "
        line = next(l for l in Path("/proc/stat").read_text().splitlines() if l.startswith(name))
        v = [int(x) for x in line.split()[1:9]]
        return sum(v) - v[3] - v[4], sum(v)

    (b0, t0), _ = busy(), await asyncio.sleep(seconds)
    b1, t1 = busy()
    return (b1 - b0) * 100 / max(1, t1 - t0)


async def settled_cpu(pid: int, cpu: int = GATEWAY_CPU) -> CpuSnapshot:
    """CPU figures once the process has gone idle (its log writer has caught up), waiting at most 3 s."""
    last = cpu_seconds(pid)
    for _ in range(30):
        await asyncio.sleep(0.1)
        now = cpu_seconds(pid)
        if now == last:
            break
        last = now
    return CpuSnapshot.take(pid, cpu)


# --- wrk -------------------------------------------------------------------------------------------

async def wrk(target: Target, concurrency: int, seconds: float, body_dir: Path, pin: bool) -> dict:
    """Run wrk against a target; its BENCH_RESULT line as a dict (milliseconds), or an error."""
    body_file = body_dir / f"body-{abs(hash(target.body))}.json"
    body_file.write_bytes(target.body)
    argv = (["taskset", "-c", str(LOAD_CPU)] if pin else []) + [
        "wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(LUA),
        f"http://127.0.0.1:{target.port}{target.path}", "--", str(body_file),
        *(f"{n}: {v}" for n, v in target.headers)]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    match = re.search(r"^BENCH_RESULT (.*)$", out.decode(errors="replace"), re.M)
    if match is None:
        return {"failed": (err or out).decode(errors="replace").strip()[-500:]}
    raw = json.loads(match.group(1))
    seconds_run = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds_run, 1) if seconds_run else 0.0,
        "p50_ms": raw["p50_us"] / 1000, "p90_ms": raw["p90_us"] / 1000, "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": sum(raw["errors"].values()), "error_kinds": {k: v for k, v in raw["errors"].items() if v},
    }


# --- the run ---------------------------------------------------------------------------------------

@dataclass
class Bench:
    """The processes under test and where their files are."""

    args: argparse.Namespace
    tmp: Path
    mock_port: int = 0
    slow_port: int = 0
    gateway_port: int = 0
    procs: list[Proc] = field(default_factory=list)
    gateway: Proc | None = None
    notes: list[str] = field(default_factory=list)
    sent_through: int = 0  # replies the gateway completed for us, warm-up and probes included

    @property
    def pin(self) -> bool:
        return not self.args.no_pin

    async def start(self) -> None:
        """Start the fast mock, the slow mock and the gateway; return once all listen."""
        python = sys.executable
        self.mock_port, self.slow_port, self.gateway_port = free_port(), free_port(), free_port()
        load_cpu = LOAD_CPU if self.pin else None
        mock = Proc("mock provider", [python, str(MOCK), "--port", str(self.mock_port), "--chunks", str(self.args.chunks)],
                    self.tmp / "mock.log", load_cpu)
        slow = Proc("slow mock provider", [python, str(MOCK), "--port", str(self.slow_port), "--chunks",
                                           str(self.args.chunks), "--delay-ms", str(SLOW_DELAY_MS)],
                    self.tmp / "slow-mock.log", load_cpu)
        self.procs += [mock, slow]
        keys = {"virtual_keys": {}}
        for provider, base in (("openai", "/v1"), ("anthropic", "")):
            keys["virtual_keys"][KEYS[provider]] = {"name": f"bench-{provider}", "provider": provider,
                                                    "api_key": f"sk-bench-{provider}"}
            keys["virtual_keys"][KEYS[provider] + "_slow"] = {
                "name": f"bench-{provider}-slow", "provider": provider, "api_key": f"sk-bench-{provider}",
                "base_url": f"http://127.0.0.1:{self.slow_port}{base}"}
        (self.tmp / "keys.json").write_text(json.dumps(keys, indent=2))
        env = {**os.environ,
               "KEYS_FILE_PATH": str(self.tmp / "keys.json"), "SERVER_HOST": "127.0.0.1",
               "SERVER_PORT": str(self.gateway_port), "DATABASE_PATH": str(self.tmp / "gateway.db"),
               "LOG_TO_FILE": "true", "LOG_FILE_PATH": str(self.tmp / "interactions.log"),
               "QUOTA_ENABLED": "false", "GATEWAY_ADMIN_KEY": "bench-admin-key-not-secret",
               "OPENAI_BASE_URL": f"http://127.0.0.1:{self.mock_port}/v1",
               "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{self.mock_port}"}
        self.gateway = Proc("gateway", [python, "-m", "gateway"], self.tmp / "gateway.stderr",
                            GATEWAY_CPU if self.pin else None, env)
        self.procs.append(self.gateway)
        for proc, port in ((mock, self.mock_port), (slow, self.slow_port), (self.gateway, self.gateway_port)):
            await wait_for_port(proc, port)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    async def load(self, target: Target, concurrency: int, seconds: float) -> dict:
        """wrk against a target, counting what the gateway served."""
        result = await wrk(target, concurrency, seconds, self.tmp, self.pin)
        if target.port == self.gateway_port:
            self.sent_through += result.get("requests", 0)
        return result

    async def fetch(self, target: Target) -> Sample:
        """One request on a fresh connection, counting what the gateway served."""
        sample = await fetch_once(target)
        if target.port == self.gateway_port:
            self.sent_through += 1
        return sample

    def target(self, where: str, provider: str, stream: bool) -> Target:
        if where == "direct":
            return direct_target(self.mock_port, provider, stream)
        return gateway_target(self.gateway_port, provider, stream)

    async def probe(self, provider: str) -> str | None:
        """Why this provider's path cannot be measured, or None when both modes answer properly."""
        for stream in (False, True):
            for where in ("direct", "gateway"):
                try:
                    sample = await self.fetch(self.target(where, provider, stream))
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                    return f"{where} {'stream' if stream else 'plain'}: {type(exc).__name__}: {exc}"
                if not reply_ok(sample, stream):
                    return (f"{where} {'stream' if stream else 'plain'}: HTTP {sample.status}: "
                            f"{sample.body[:300].decode(errors='replace')}")
        return None

    async def cell(self, provider: str, stream: bool, concurrency: int) -> dict:
        """One row: the same load directly and through the gateway."""
        assert self.gateway is not None
        args, pid = self.args, self.gateway.pid
        direct = await self.load(self.target("direct", provider, stream), concurrency, args.duration)
        before = await settled_cpu(pid)
        started = time.monotonic()
        through = await self.load(self.target("gateway", provider, stream), concurrency, args.duration)
        after = await settled_cpu(pid)
        elapsed = time.monotonic() - started
        row: dict = {"provider": provider, "mode": "stream" if stream else "plain", "concurrency": concurrency,
                     "direct": direct, "gateway": through}
        memory = memory_kb(pid)
        row["gateway_rss_kb"], row["gateway_peak_kb"] = memory["VmRSS"], memory["VmHWM"]
        used = after.process - before.process
        # Whatever else ran on the gateway's CPU meanwhile (another program) makes the figures noisier.
        row["gateway_cpu_other_load_pct"] = round(max(0.0, after.cpu_busy - before.cpu_busy - used) * 100 / elapsed, 1)
        if through.get("requests"):
            row["gateway_cpu_ms_per_req"] = round(used * 1000 / through["requests"], 3)
            row["gateway_cpu_ms_per_req_other_threads"] = round(
                (used - (after.main_thread - before.main_thread)) * 1000 / through["requests"], 3)
        if direct.get("requests") and through.get("requests"):
            row["added_ms"] = {q: round(through[q] - direct[q], 3) for q in ("p50_ms", "p90_ms", "p99_ms")}
        return row

    async def matrix(self) -> tuple[list[dict], list[dict], list[dict]]:
        """Every cell, the time-to-first-byte runs and the arrival checks."""
        args = self.args
        cells: list[dict] = []
        firsts: list[dict] = []
        arrivals: list[dict] = []
        for provider in args.providers:
            problem = await self.probe(provider)
            if problem is not None:
                note = f"{provider}: skipped, a probe request failed: {problem}"
                self.notes.append(note)
                log(note)
                continue
            for stream in [m == "stream" for m in args.modes]:
                mode = "stream" if stream else "plain"
                log(f"{provider} {mode}: warming up {args.warmup:g} s")
                await self.load(self.target("direct", provider, stream), 16, max(1.0, args.warmup / 2))
                await self.load(self.target("gateway", provider, stream), 16, args.warmup)
                for concurrency in args.concurrency:
                    row = await self.cell(provider, stream, concurrency)
                    cells.append(row)
                    log(describe_cell(row))
                if stream:
                    for concurrency in (c for c in args.concurrency if c <= 16):
                        entry = {"provider": provider, "concurrency": concurrency}
                        for where in ("direct", "gateway"):
                            entry[where] = await ttfb_run(self.target(where, provider, True), concurrency, args.ttfb_seconds)
                        self.sent_through += entry["gateway"]["requests"]
                        firsts.append(entry)
                        log(f"{provider} stream c={concurrency}: first byte p50 direct {entry['direct']['p50_ms']} ms, "
                            f"gateway {entry['gateway']['p50_ms']} ms")
                    slow_direct = direct_target(self.slow_port, provider, True)
                    slow_gateway = gateway_target(self.gateway_port, provider, True, slow=True)
                    arrivals.append({"provider": provider, "direct": await arrival_check(slow_direct, args.chunks),
                                     "gateway": await arrival_check(slow_gateway, args.chunks)})
                    self.sent_through += 1
        return cells, firsts, arrivals

    async def rss_run(self, seconds: float, warmup: float) -> dict:
        """Concurrency 64 for `seconds`, shared by every working request kind; VmRSS each second."""
        assert self.gateway is not None
        pid = self.gateway.pid
        kinds = []
        for provider in self.args.providers:
            problem = await self.probe(provider)
            if problem is not None:
                self.notes.append(f"{provider}: left out of the RSS run, a probe request failed: {problem}")
                continue
            kinds += [(provider, m == "stream") for m in self.args.modes]
        if not kinds:
            raise SystemExit("no request kind works through the gateway; see the notes above")
        share = max(1, 64 // len(kinds))
        names = ", ".join(f"{p} {'stream' if s else 'plain'}" for p, s in kinds)
        log(f"RSS run: {seconds:g} s at concurrency {share * len(kinds)} ({names}), sampling VmRSS each second")
        runs = [asyncio.create_task(self.load(self.target("gateway", p, s), share, seconds)) for p, s in kinds]
        samples: list[tuple[float, int]] = []
        before = CpuSnapshot.take(pid, GATEWAY_CPU)
        started = time.monotonic()
        while not all(run.done() for run in runs):
            samples.append((round(time.monotonic() - started, 1), memory_kb(pid)["VmRSS"]))
            await asyncio.sleep(1)
        results = [await run for run in runs]
        after = CpuSnapshot.take(pid, GATEWAY_CPU)
        other = max(0.0, (after.cpu_busy - before.cpu_busy) - (after.process - before.process))
        warm = [kb for t, kb in samples if t >= warmup]
        at_warm = warm[0] if warm else samples[-1][1]
        slope = _slope([(t, kb) for t, kb in samples if t >= warmup])
        report = {
            "seconds": seconds, "warmup_s": warmup, "concurrency": share * len(kinds),
            "requests": sum(r.get("requests", 0) for r in results),
            "errors": sum(r.get("errors", 0) for r in results),
            "rss_start_kb": samples[0][1], "rss_after_warmup_kb": at_warm, "rss_end_kb": samples[-1][1],
            "growth_after_warmup_kb": samples[-1][1] - at_warm,
            "slope_kb_per_min": round(slope * 60, 1),
            "peak_kb": memory_kb(pid)["VmHWM"], "samples": samples,
            "gateway_cpu_other_load_pct": round(other * 100 / (time.monotonic() - started), 1),
        }
        return report

    def files(self) -> dict:
        """Sizes of what the gateway wrote: the database and the JSON interaction log (and its line count)."""
        log_file = self.tmp / "interactions.log"
        lines = 0
        if log_file.exists():
            with open(log_file, "rb") as f:
                while block := f.read(1 << 20):
                    lines += block.count(b"\n")
        database = self.tmp / "gateway.db"
        return {"log_lines": lines, "log_bytes": log_file.stat().st_size if log_file.exists() else 0,
                "db_bytes": sum(p.stat().st_size for p in self.tmp.glob("gateway.db*")) if database.exists() else 0}


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope (kB per second)."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


# --- output ----------------------------------------------------------------------------------------

def log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def describe_cell(row: dict) -> str:
    g, d = row["gateway"], row["direct"]
    if "failed" in g or "failed" in d:
        return f"{row['provider']} {row['mode']} c={row['concurrency']}: wrk failed: {g.get('failed') or d.get('failed')}"
    return (f"{row['provider']} {row['mode']} c={row['concurrency']}: direct {d['rps']:.0f} req/s, "
            f"gateway {g['rps']:.0f} req/s, added p50 {row['added_ms']['p50_ms']:+.2f} ms, "
            f"{row.get('gateway_cpu_ms_per_req', 0):.2f} CPU ms/req")


def table(report: dict) -> str:
    """The results as fixed-width text."""
    out = []
    head = (f"{'key':<10}{'mode':<7}{'conc':>5} | {'direct r/s':>10}{'p50':>8}{'p90':>8}{'p99':>8} | "
            f"{'gateway r/s':>11}{'p50':>8}{'p90':>8}{'p99':>8}{'err':>6} | {'added p50':>9}{'p90':>8}{'p99':>8} | "
            f"{'CPU ms/req':>10}{'(threads)':>10}{'noise%':>7}")
    if report["cells"]:
        out += ["Throughput and latency (ms); 'added' = through the gateway minus direct to the mock;",
                "CPU ms/req = the gateway's CPU per request, (threads) = the part outside its event loop thread;",
                "noise% = other programs' load on the gateway's CPU during the cell", head, "-" * len(head)]
    for row in report["cells"]:
        d, g = row["direct"], row["gateway"]
        if "failed" in d or "failed" in g:
            out.append(f"{row['provider']:<10}{row['mode']:<7}{row['concurrency']:>5} | wrk failed")
            continue
        a = row["added_ms"]
        errors = g["errors"] + d["errors"]
        out.append(
            f"{row['provider']:<10}{row['mode']:<7}{row['concurrency']:>5} | {d['rps']:>10.0f}{d['p50_ms']:>8.2f}"
            f"{d['p90_ms']:>8.2f}{d['p99_ms']:>8.2f} | {g['rps']:>11.0f}{g['p50_ms']:>8.2f}{g['p90_ms']:>8.2f}"
            f"{g['p99_ms']:>8.2f}{errors:>6} | {a['p50_ms']:>+9.2f}{a['p90_ms']:>+8.2f}{a['p99_ms']:>+8.2f} | "
            f"{row.get('gateway_cpu_ms_per_req', 0):>10.3f}{row.get('gateway_cpu_ms_per_req_other_threads', 0):>10.3f}"
            f"{row.get('gateway_cpu_other_load_pct', 0):>7.0f}")
    if report["first_byte"]:
        out += ["", "Streams: time to first body byte (ms), p50 / p99",
                f"{'key':<10}{'conc':>5} | {'direct':>15} | {'gateway':>15} | {'added p50':>9} | errors"]
        for e in report["first_byte"]:
            d, g = e["direct"], e["gateway"]
            added = g["p50_ms"] - d["p50_ms"] if d["p50_ms"] is not None and g["p50_ms"] is not None else None
            out.append(f"{e['provider']:<10}{e['concurrency']:>5} | {_ms(d['p50_ms']):>7} / {_ms(d['p99_ms']):>5} | "
                       f"{_ms(g['p50_ms']):>7} / {_ms(g['p99_ms']):>5} | {_ms(added):>9} | {d['errors'] + g['errors']}")
    if report["arrival"]:
        out += ["", f"Streams: incremental arrival (mock pauses {SLOW_DELAY_MS} ms before each of "
                    f"{report['settings']['chunks']} chunks; bursts seen by the client / expected)"]
        for e in report["arrival"]:
            parts = []
            for where in ("direct", "gateway"):
                r = e[where]
                parts.append(f"{where} {'yes' if r['incremental'] else 'NO'} ({r['bursts']}/{r['expected_bursts']} "
                             f"bursts over {r['spread_ms']} ms)")
            out.append(f"{e['provider']:<10}" + ", ".join(parts))
    gw = report.get("gateway", {})
    if gw:
        out += ["", f"Gateway memory: RSS after start {gw['rss_start_kb'] / 1024:.1f} MB, "
                    f"at end {gw['rss_end_kb'] / 1024:.1f} MB, peak (VmHWM) {gw['peak_kb'] / 1024:.1f} MB",
                f"Gateway wrote {gw['log_lines']} JSON log lines ({gw['log_bytes'] / 1e6:.1f} MB) and "
                f"{gw['db_bytes'] / 1e6:.1f} MB of SQLite; it completed {gw['requests_through']} replies for us "
                f"(warm-up included; requests cut off when wrk stops are logged too)"]
    rss = report.get("rss_run")
    if rss:
        out += ["", f"RSS run: {rss['seconds']:g} s at concurrency {rss['concurrency']}, {rss['requests']} requests, "
                    f"{rss['errors']} errors",
                f"  RSS {rss['rss_start_kb'] / 1024:.1f} MB at start, {rss['rss_after_warmup_kb'] / 1024:.1f} MB after "
                f"{rss['warmup_s']:g} s warm-up, {rss['rss_end_kb'] / 1024:.1f} MB at end: "
                f"growth after warm-up {rss['growth_after_warmup_kb'] / 1024:+.1f} MB "
                f"(trend {rss['slope_kb_per_min'] / 1024:+.2f} MB/min), peak {rss['peak_kb'] / 1024:.1f} MB; "
                f"noise {rss['gateway_cpu_other_load_pct']:.0f}%"]
    if report["notes"]:
        out += ["", "Notes:"] + [f"  - {n}" for n in report["notes"]]
    return "\n".join(out)


def compare(old_path: Path, new_path: Path) -> str:
    """Two result files side by side: gateway req/s, added p50 and CPU per request."""
    old, new = (json.loads(p.read_text()) for p in (old_path, new_path))
    index = {(c["provider"], c["mode"], c["concurrency"]): c for c in old["cells"]}
    out = [f"old: {old_path.name} ({old.get('commit') or '?'})   new: {new_path.name} ({new.get('commit') or '?'})",
           f"{'key':<10}{'mode':<7}{'conc':>5} | {'gateway r/s old':>15}{'new':>8}{'Δ%':>7} | "
           f"{'added p50 old':>13}{'new':>8} | {'CPU ms/req old':>14}{'new':>8}{'Δ%':>7}"]
    for c in new["cells"]:
        o = index.get((c["provider"], c["mode"], c["concurrency"]))
        if o is None or "added_ms" not in c or "added_ms" not in o:
            continue
        rps_o, rps_n = o["gateway"]["rps"], c["gateway"]["rps"]
        cpu_o, cpu_n = o.get("gateway_cpu_ms_per_req", 0), c.get("gateway_cpu_ms_per_req", 0)
        out.append(f"{c['provider']:<10}{c['mode']:<7}{c['concurrency']:>5} | {rps_o:>15.0f}{rps_n:>8.0f}"
                   f"{_pct(rps_o, rps_n):>7} | {o['added_ms']['p50_ms']:>13.2f}{c['added_ms']['p50_ms']:>8.2f} | "
                   f"{cpu_o:>14.3f}{cpu_n:>8.3f}{_pct(cpu_o, cpu_n):>7}")
    return "\n".join(out)


def _pct(old: float, new: float) -> str:
    return f"{(new - old) * 100 / old:+.0f}" if old else "-"


def commit() -> str | None:
    """The checked-out commit, read from .git without running git."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:12]
    except OSError:
        pass
    return None


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


# --- main ------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure what the gateway adds over calling the provider directly.")
    parser.add_argument("--duration", type=float, default=5, help="seconds per measured cell (default 5)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per key and mode (default 2)")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated concurrency levels (default 1,16,64)")
    parser.add_argument("--providers", default="openai,anthropic", help="which keys to measure (default openai,anthropic)")
    parser.add_argument("--modes", default="plain,stream", help="plain and/or stream (default both)")
    parser.add_argument("--chunks", type=int, default=8, help="content chunks per streamed reply (default 8)")
    parser.add_argument("--ttfb-seconds", type=float, default=2, help="seconds per time-to-first-byte run (default 2)")
    parser.add_argument("--rss-run", type=float, nargs="?", const=60, metavar="SECONDS",
                        help="instead of the matrix: a memory-flatness run at concurrency 64 (default 60 s)")
    parser.add_argument("--rss-warmup", type=float, default=10, help="seconds of the RSS run treated as warm-up (default 10)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (database, logs) and print its path")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"), help="compare two result files and exit")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.providers = [p.strip() for p in args.providers.split(",") if p.strip() in KEYS]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip() in ("plain", "stream")]
    return args


async def run(args: argparse.Namespace, tmp: Path) -> dict:
    bench = Bench(args, tmp)
    if args.no_pin:
        bench.notes.append("processes were not pinned to CPUs (--no-pin)")
    elif (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        bench.notes.append("fewer than 2 CPUs or no taskset: processes were not pinned, figures are noisier")
        args.no_pin = True
    if bench.pin:
        os.sched_setaffinity(0, {LOAD_CPU})  # our own client shares the load generator's CPU, not the gateway's
    idle_busy = await busy_share(GATEWAY_CPU if bench.pin else None)
    if idle_busy > 10:
        bench.notes.append(f"other programs kept the gateway's CPU {idle_busy:.0f}% busy just before the run: "
                           "figures are noisier (see noise% per cell)")
    report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit(), "machine": machine(),
                    "settings": {k: v for k, v in vars(args).items() if k != "compare"},
                    "cells": [], "first_byte": [], "arrival": [], "notes": bench.notes}
    try:
        await bench.start()
        assert bench.gateway is not None
        pid = bench.gateway.pid
        start_kb = memory_kb(pid)["VmRSS"]
        log(f"gateway pid {pid} on 127.0.0.1:{bench.gateway_port} (CPU {GATEWAY_CPU}), mock on :{bench.mock_port}, "
            f"slow mock on :{bench.slow_port}, wrk (CPU {LOAD_CPU}); files in {tmp}")
        if args.rss_run:
            report["rss_run"] = await bench.rss_run(args.rss_run, args.rss_warmup)
        else:
            report["cells"], report["first_byte"], report["arrival"] = await bench.matrix()
        await settled_cpu(pid)
        memory = memory_kb(pid)
        report["gateway"] = {"rss_start_kb": start_kb, "rss_end_kb": memory["VmRSS"], "peak_kb": memory["VmHWM"],
                             "requests_through": bench.sent_through, **bench.files()}
        if bench.gateway.popen.poll() is not None:
            bench.notes.append(f"the gateway exited during the run (code {bench.gateway.popen.returncode})")
        lines = bench.gateway.log.read_text(errors="replace").splitlines()
        errors = [i for i, line in enumerate(lines) if " ERROR " in line]
        if errors:
            report["gateway_error_excerpt"] = lines[errors[0]:errors[0] + 30]
            bench.notes.append(f"the gateway logged {len(errors)} ERROR lines; the first: {lines[errors[0]][:200]} "
                               f"(more in the JSON's gateway_error_excerpt)")
    finally:
        bench.stop()
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        print(compare(*args.compare))
        return 0
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    started = time.monotonic()
    try:
        report = asyncio.run(run(args, tmp))
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_temp:
            print(f"bench: temp files kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print()
    print(table(report))
    print(f"\n{report['elapsed_s']:g} s; results written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
