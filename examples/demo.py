"""`make demo`: the gateway in front of a local mock provider, real traffic in a minute, no API keys.

Starts examples/mock_provider.py on 127.0.0.1:9999 and the gateway on 127.0.0.1:8080 (with a
temporary keys file, database and interaction log), sends a few requests to show what comes back,
prints the commands to try next, then shows each interaction the gateway records until Ctrl-C,
which stops both servers and removes the temporary files.

    python examples/demo.py [--port 8080] [--mock-port 9999] [--delay-ms 60]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPENAI_KEY, ANTHROPIC_KEY = "vk_demo_openai", "vk_demo_anthropic"
ADMIN_KEY = "demo-admin-key"
OPENAI_MODEL, ANTHROPIC_MODEL = "gpt-4o-mini", "claude-haiku-4-5"


class Child:
    """A server we started, in its own session so Ctrl-C reaches only us and we stop it in order."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name, self.log = name, log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                          start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])

    def stop(self) -> None:
        """SIGTERM (the gateway then finishes in-flight requests), SIGKILL if it lingers."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers do: a port held only by closed connections (TIME_WAIT) is free to listen on.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until_listening(child: Child, port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not child.alive():
            raise SystemExit(f"demo: the {child.name} stopped at start:\n{child.tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"demo: the {child.name} did not start listening on port {port}:\n{child.tail()}")


def post(port: int, path: str, key: str, body: dict, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """Send a JSON POST to the gateway; the response is left to read (whole or line by line)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", path, json.dumps(body),
                       {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})})
    return connection.getresponse()


def bold(text: str) -> str:
    return f"\033[1m{text}\033[0m" if sys.stdout.isatty() else text


def show(title: str, command: str) -> None:
    print(f"\n{bold('▶ ' + title)}\n  $ {command}")


def demo_requests(port: int) -> None:
    """A few requests through the gateway, printed as a newcomer would want to see them."""
    base = f"http://localhost:{port}"
    messages = [{"role": "user", "content": "Hello, gateway!"}]

    show("A chat completion with the OpenAI-backed virtual key",
         f"curl {base}/v1/chat/completions -H 'Authorization: Bearer {OPENAI_KEY}' "
         f"-d '{{\"model\": \"{OPENAI_MODEL}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello, gateway!\"}}]}}'")
    reply = post(port, "/v1/chat/completions", OPENAI_KEY, {"model": OPENAI_MODEL, "messages": messages})
    document = json.loads(reply.read())
    print(f"  HTTP {reply.status}, x-gateway-overhead-ms: {reply.getheader('x-gateway-overhead-ms')}")
    if reply.status == 200:
        print(f"  reply: {document['choices'][0]['message']['content']!r}")
        print(f"  usage: {document.get('usage', {}).get('prompt_tokens')} prompt + "
              f"{document.get('usage', {}).get('completion_tokens')} completion tokens")
    else:
        print(f"  {json.dumps(document)}")

    show("The same, streamed (server-sent events, relayed as they arrive)",
         f"curl -N {base}/v1/chat/completions -H 'Authorization: Bearer {OPENAI_KEY}' "
         f"-d '{{\"model\": \"{OPENAI_MODEL}\", \"stream\": true, \"messages\": [...]}}'")
    stream_and_print(post(port, "/v1/chat/completions", OPENAI_KEY,
                          {"model": OPENAI_MODEL, "messages": messages, "stream": True}))

    show("The Anthropic-backed key on the same OpenAI endpoint (translated to Anthropic's Messages API)",
         f"curl -N {base}/v1/chat/completions -H 'Authorization: Bearer {ANTHROPIC_KEY}' "
         f"-d '{{\"model\": \"{ANTHROPIC_MODEL}\", \"stream\": true, \"messages\": [...]}}'")
    stream_and_print(post(port, "/v1/chat/completions", ANTHROPIC_KEY,
                          {"model": ANTHROPIC_MODEL, "messages": messages, "stream": True}))

    show("A wrong key: every error comes back in the OpenAI error shape",
         f"curl {base}/v1/chat/completions -H 'Authorization: Bearer vk_not_a_key' -d '{{...}}'")
    reply = post(port, "/v1/chat/completions", "vk_not_a_key", {"model": OPENAI_MODEL, "messages": messages})
    print(f"  HTTP {reply.status}: {json.dumps(json.loads(reply.read()), ensure_ascii=False)}")


def stream_and_print(reply: http.client.HTTPResponse) -> None:
    """Print the streamed text piece by piece, as the events arrive."""
    if reply.status != 200:
        print(f"  HTTP {reply.status}: {reply.read().decode(errors='replace')}")
        return
    print("  reply: ", end="", flush=True)
    pieces = 0
    while line := reply.readline():
        if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                pieces += 1
                print(text, end="|", flush=True)
    print(f"\n  ({pieces} pieces; '|' marks where one event ended)")


def try_it(port: int, log_file: Path, extras: list[str]) -> None:
    base = f"http://localhost:{port}"
    print(f"""
{bold("Try it yourself")} (the gateway runs on {base}; virtual keys {OPENAI_KEY} and {ANTHROPIC_KEY}):

  curl {base}/v1/chat/completions -H 'Authorization: Bearer {OPENAI_KEY}' \\
       -d '{{"model": "{OPENAI_MODEL}", "messages": [{{"role": "user", "content": "Hi"}}]}}'
  curl -N {base}/v1/chat/completions -H 'Authorization: Bearer {ANTHROPIC_KEY}' \\
       -d '{{"model": "{ANTHROPIC_MODEL}", "stream": true, "messages": [{{"role": "user", "content": "Hi"}}]}}'
  curl {base}/v1/models -H 'Authorization: Bearer {OPENAI_KEY}'
  curl {base}/v1/chat/completions -H 'Authorization: Bearer {OPENAI_KEY}' \\
       -d '{{"model": "error-429", "messages": [{{"role": "user", "content": "Hi"}}]}}'   # the mock answers 429

  bash examples/curl.sh                    # every curl example, with what each shows
  .venv/bin/python examples/openai_client.py       # the official openai SDK (chat + stream)
  .venv/bin/python examples/anthropic_client.py    # the official anthropic SDK on /v1/messages

  Python:  OpenAI(base_url="{base}/v1", api_key="{OPENAI_KEY}")
           Anthropic(base_url="{base}", api_key="{ANTHROPIC_KEY}")""")
    for line in extras:
        print(f"  {line}")
    print(f"\n  The JSON interaction log is {log_file} (removed when the demo stops).")
    print("\nEach request the gateway records is shown below. Ctrl-C stops the demo.\n")


def summarize(line: bytes) -> str | None:
    """One interaction log line as a short human line."""
    try:
        r = json.loads(line)
    except ValueError:
        return None
    if not isinstance(r, dict):
        return None
    tokens = f" tokens {r['prompt_tokens']}+{r['completion_tokens']}" if r.get("prompt_tokens") is not None else ""
    overhead = f" (gateway {r['overhead_ms']:.1f} ms)" if isinstance(r.get("overhead_ms"), (int, float)) else ""
    duration = f" {r['duration_ms']:.1f} ms" if isinstance(r.get("duration_ms"), (int, float)) else ""
    error = f" {r['error_type']}" if r.get("error_type") else ""
    return (f"  [log] {r.get('status')} {r.get('method')} {r.get('path')} key={r.get('key') or '-'} model={r.get('model') or '-'}"
            f"{' stream' if r.get('stream') else ''}{duration}{overhead}{tokens}{error}")


def follow(log_file: Path, children: list[Child]) -> None:
    """Print each new log line until Ctrl-C or a server stops."""
    offset = 0
    while all(child.alive() for child in children):
        if log_file.exists():
            with open(log_file, "rb") as f:
                f.seek(offset)
                data = f.read()
            complete = data[:data.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.splitlines():
                text = summarize(line)
                if text:
                    print(text, flush=True)
        time.sleep(0.3)
    for child in children:
        if not child.alive():
            print(f"demo: the {child.name} stopped unexpectedly:\n{child.tail()}", file=sys.stderr)


def extra_endpoints(port: int) -> list[str]:
    """Lines about the operator endpoints this version of the gateway has."""
    lines = []
    for path, text in (("/health", "health check"), ("/metrics", "metrics (JSON; Prometheus text with Accept: text/plain)"),
                       ("/dashboard", f"dashboard (admin key: {ADMIN_KEY})")):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            status = connection.getresponse().status
        except OSError:
            continue
        finally:
            connection.close()
        if status != 404:
            lines.append(f"http://localhost:{port}{path}".ljust(38) + f"  {text}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the gateway in front of a local mock provider.")
    parser.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    parser.add_argument("--mock-port", type=int, default=9999, help="mock provider port (default 9999)")
    parser.add_argument("--delay-ms", type=float, default=60, help="pause between streamed chunks (default 60)")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM (e.g. from `timeout` or a process manager) stops the demo as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    for port, what, flag in ((args.port, "gateway", "--port"), (args.mock_port, "mock provider", "--mock-port")):
        if not port_free(port):
            print(f"demo: port {port} is in use; stop what runs there or pick another {what} port with {flag}",
                  file=sys.stderr)
            return 1
    tmp = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    keys = {"virtual_keys": {
        # A generous quota, so trying every example a few times never runs into 429.
        OPENAI_KEY: {"name": "demo-openai", "provider": "openai", "api_key": "placeholder.openai.key.not-used",
                     "quota_limit": 1000},
        ANTHROPIC_KEY: {"name": "demo-anthropic", "provider": "anthropic", "api_key": "placeholder.anthropic.key.not-used",
                        "quota_limit": 1000},
    }}
    (tmp / "keys.json").write_text(json.dumps(keys, indent=2))
    log_file = tmp / "interactions.log"
    env = {**os.environ, "KEYS_FILE_PATH": str(tmp / "keys.json"), "SERVER_HOST": "127.0.0.1",
           "SERVER_PORT": str(args.port), "DATABASE_PATH": str(tmp / "gateway.db"), "LOG_TO_FILE": "true",
           "LOG_FILE_PATH": str(log_file), "GATEWAY_ADMIN_KEY": ADMIN_KEY,
           "OPENAI_BASE_URL": f"http://127.0.0.1:{args.mock_port}/v1",
           "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{args.mock_port}"}
    children: list[Child] = []
    try:
        mock = Child("mock provider", [sys.executable, str(ROOT / "examples" / "mock_provider.py"),
                                       "--port", str(args.mock_port), "--delay-ms", str(args.delay_ms)],
                     tmp / "mock.log")
        children.append(mock)
        wait_until_listening(mock, args.mock_port)
        gateway = Child("gateway", [sys.executable, "-m", "gateway"], tmp / "gateway.log", env)
        children.append(gateway)
        wait_until_listening(gateway, args.port)
        print(f"Mock provider on http://127.0.0.1:{args.mock_port} (speaks OpenAI and Anthropic; no real keys)")
        print(f"Gateway on http://127.0.0.1:{args.port}, pointed at the mock")
        demo_requests(args.port)
        try_it(args.port, log_file, extra_endpoints(args.port))
        follow(log_file, children)
        return 1
    except KeyboardInterrupt:
        print("\nStopping the gateway and the mock provider…")
        return 0
    finally:
        # Ctrl-C during the stop must not leave a server behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
