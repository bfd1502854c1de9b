"""Settings: read once from the environment (and CLI flags), validated, frozen.

This is the only module that reads os.environ. A bad value stops the start with
a message naming the variable and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a whole number above 0")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected a whole number, 0 or more")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError("expected a number of seconds above 0")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("expected a port number from 0 to 65535")
    return value


def _url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return raw.strip().rstrip("/")


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("expected a non-empty value")
    return raw.strip()


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    default: str | None
    parse: Callable[[str], Any]
    help: str


# One row per setting: the README's settings table is written from this list.
SETTINGS: dict[str, Setting] = {
    "keys_file": Setting("KEYS_FILE_PATH", "keys.json", _text, "Path of the virtual keys file."),
    "host": Setting("SERVER_HOST", "0.0.0.0", _text, "Address to listen on."),
    "port": Setting("SERVER_PORT", "8080", _port, "Port to listen on."),
    "log_to_file": Setting("LOG_TO_FILE", "false", _bool, "Write the JSON interaction log to LOG_FILE_PATH instead of stdout."),
    "log_file": Setting("LOG_FILE_PATH", "gateway.log", _text, "Where the JSON interaction log goes when LOG_TO_FILE=true."),
    "quota_enabled": Setting("QUOTA_ENABLED", "true", _bool, "Enforce per-key request quotas."),
    "quota_limit": Setting("QUOTA_LIMIT", "100", _positive_int, "Requests per key per window, unless the key sets quota_limit."),
    "quota_window_s": Setting("QUOTA_WINDOW_SECONDS", "3600", _positive_int, "Length of the sliding quota window."),
    "request_timeout": Setting("REQUEST_TIMEOUT", "30", _positive_float, "Seconds to wait for the provider's first byte, and between two chunks of a reply."),
    "connect_timeout": Setting("CONNECT_TIMEOUT", "10", _positive_float, "Seconds to wait for a TCP/TLS connection to the provider."),
    "database_path": Setting("DATABASE_PATH", "gateway.db", _text, "SQLite database file."),
    "retention_days": Setting("RETENTION_DAYS", "30", _positive_int, "Interactions older than this are pruned in the background."),
    "openai_base_url": Setting("OPENAI_BASE_URL", "https://api.openai.com/v1", _url, "OpenAI API base (the OpenAI SDK's convention, with /v1)."),
    "anthropic_base_url": Setting("ANTHROPIC_BASE_URL", "https://api.anthropic.com", _url, "Anthropic API base (the Anthropic SDK's convention, without /v1)."),
    "max_request_bytes": Setting("MAX_REQUEST_BYTES", str(4 * 1024 * 1024), _positive_int, "Largest request body accepted (413 above)."),
    "max_response_bytes": Setting("MAX_RESPONSE_BYTES", str(32 * 1024 * 1024), _positive_int, "Largest non-streamed provider reply accepted (502 above)."),
    "max_upstream_concurrency": Setting("MAX_UPSTREAM_CONCURRENCY", "512", _positive_int, "Upstream requests in flight at once; more wait briefly, then get 503."),
    "max_client_connections": Setting("MAX_CLIENT_CONNECTIONS", None, _positive_int, "Open client connections at once; more get an immediate 503 (default: what the open-file limit leaves)."),
    "overload_wait": Setting("OVERLOAD_WAIT", "2", _positive_float, "Seconds a request may wait for an upstream slot before 503."),
    "header_timeout": Setting("HEADER_TIMEOUT", "10", _positive_float, "Seconds a client has to send request headers (and between body reads)."),
    "admin_key": Setting("GATEWAY_ADMIN_KEY", None, _text, "Admin key for the dashboard; generated and printed at start when unset."),
    "upstream_retries": Setting("UPSTREAM_RETRIES", "1", _non_negative_int, "Retries of a refused/reset provider connection or a 502/503/529, before any byte reached the client (0: off)."),
    "retry_backoff": Setting("RETRY_BACKOFF", "0.25", _positive_float, "Seconds before the first retry (doubling, with jitter)."),
    "shutdown_grace": Setting("SHUTDOWN_GRACE", "30", _positive_float, "Seconds in-flight requests get to finish on SIGTERM/SIGINT."),
}


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of the gateway, validated."""

    keys_file: Path
    host: str
    port: int
    log_to_file: bool
    log_file: Path
    quota_enabled: bool
    quota_limit: int
    quota_window_s: int
    request_timeout: float
    connect_timeout: float
    database_path: Path
    retention_days: int
    openai_base_url: str
    anthropic_base_url: str
    max_request_bytes: int
    max_response_bytes: int
    max_upstream_concurrency: int
    max_client_connections: int | None
    overload_wait: float
    header_timeout: float
    admin_key: str | None
    upstream_retries: int
    retry_backoff: float
    shutdown_grace: float

    @classmethod
    def load(cls, environ: Mapping[str, str], overrides: Mapping[str, str | None] | None = None) -> "Config":
        """Build the config from an environment mapping; CLI `overrides` (by field name) win."""
        values: dict[str, Any] = {}
        overrides = overrides or {}
        for name, setting in SETTINGS.items():
            raw = overrides.get(name)
            source = f"--{name.replace('_', '-')}"
            if raw is None:
                raw = environ.get(setting.env)
                source = setting.env
            if raw is None:
                raw = setting.default
            if raw is None:
                values[name] = None
                continue
            try:
                values[name] = setting.parse(raw)
            except ValueError as exc:
                reason = str(exc) if "expected" in str(exc) else f"expected {setting.parse.__name__.strip('_').replace('_', ' ')}"
                raise ConfigError(f"{source}={raw!r} is not valid: {reason}") from None
        for name in ("keys_file", "log_file", "database_path"):
            values[name] = Path(values[name])
        return cls(**values)

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (tests use it)."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Config(**current)
