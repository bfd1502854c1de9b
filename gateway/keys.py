"""Virtual keys: load and validate keys.json, authenticate a request by digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Mapping

import jsonschema

from .errors import AuthenticationFailed, ModelNotAllowed

_SCHEMA = json.loads(resources.files(__package__).joinpath("keys.schema.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(_SCHEMA)


class KeysFileError(Exception):
    """keys.json is missing, unreadable or invalid; the message names the file, the key and the fault."""


def mask(secret: str) -> str:
    """A form of a key safe to show: its first 8 and last 3 characters."""
    if len(secret) <= 14:
        return secret[:3] + "…"
    return f"{secret[:8]}…{secret[-3:]}"


def digest(secret: str) -> bytes:
    """The lookup digest of a presented key (sha256)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """One virtual key. `label` is what logs, rows and pages show; the key itself is never kept."""

    label: str
    provider: str
    api_key: str = field(repr=False)
    quota_limit: int | None = None
    models: frozenset[str] | None = None
    base_url: str | None = None

    def check_model(self, model: str) -> None:
        """Refuse a model outside the key's allow-list."""
        if self.models is not None and model not in self.models:
            raise ModelNotAllowed(f"This key may not use model {model!r}.", param="model")


class KeyRing:
    """The loaded keys, looked up by the sha256 digest of what the client presents.

    Lookups hash the presented value and index a dict by digest, so no string
    comparison against a stored key can leak timing.
    """

    def __init__(self, keys: Mapping[bytes, VirtualKey]) -> None:
        self._by_digest = dict(keys)

    def __len__(self) -> int:
        return len(self._by_digest)

    def labels(self) -> list[VirtualKey]:
        """All keys (by label), for the dashboard."""
        return sorted(self._by_digest.values(), key=lambda k: k.label)

    def authenticate(self, presented: str | None) -> VirtualKey:
        """The key the client presented, or AuthenticationFailed."""
        if not presented:
            raise AuthenticationFailed(
                "Missing API key: send 'Authorization: Bearer <virtual key>' or 'x-api-key: <virtual key>'."
            )
        key = self._by_digest.get(digest(presented))
        if key is None:
            raise AuthenticationFailed(f"Invalid API key: {mask(presented)}.")
        return key

    @classmethod
    def load(cls, path: Path, environ: Mapping[str, str]) -> "KeyRing":
        """Read and validate a keys file; raise KeysFileError with one clear message."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeysFileError(f"{path}: file not found (copy keys.example.json to start)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeysFileError(f"{path}: cannot read it: {exc}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeysFileError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(document))
        if error is not None:
            raise KeysFileError(f"{path}: {_describe(error)}")
        keys: dict[bytes, VirtualKey] = {}
        labels: set[str] = set()
        for secret, entry in document["virtual_keys"].items():
            label = entry.get("name") or mask(secret)
            where = f"{path}: virtual key {label!r}"
            if label in labels:
                raise KeysFileError(f"{where}: name used twice")
            labels.add(label)
            api_key = entry.get("api_key")
            if api_key is None:
                api_key = environ.get(entry["api_key_env"], "")
                if not api_key:
                    raise KeysFileError(f"{where}: environment variable {entry['api_key_env']} is unset or empty")
            models = entry.get("models")
            keys[digest(secret)] = VirtualKey(
                label=label,
                provider=entry["provider"],
                api_key=api_key,
                quota_limit=entry.get("quota_limit"),
                models=frozenset(models) if models is not None else None,
                base_url=entry.get("base_url", "").rstrip("/") or None,
            )
        return cls(keys)


def _describe(error: jsonschema.ValidationError) -> str:
    """One line saying where in the file the fault is, without echoing secrets."""
    path = list(error.absolute_path)
    if len(path) >= 2 and path[0] == "virtual_keys":
        where = f"virtual key {mask(str(path[1]))!r}"
        rest = ".".join(str(p) for p in path[2:])
        if rest:
            where += f" field {rest!r}"
    elif len(path) == 1 and path[0] == "virtual_keys" and error.validator == "propertyNames":
        return "a virtual key name must be 8-256 characters of letters, digits and _.:-"
    else:
        where = "/".join(str(p) for p in path) or "top level"
    if error.validator in ("api_key", "oneOf"):
        return f"{where}: give exactly one of api_key or api_key_env"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "additionalProperties":
        return f"{where}: unknown field ({error.message.split('(')[-1].rstrip(')')})"
    # Never echo the value: it may be a secret.
    if error.validator == "enum":
        return f"{where}: must be one of " + ", ".join(repr(v) for v in error.validator_value)
    if error.validator == "type":
        return f"{where}: must be of type {error.validator_value}"
    if error.validator in ("minimum", "minProperties", "minLength", "pattern", "uniqueItems"):
        return f"{where}: fails {error.validator} {error.validator_value!r}"
    return f"{where}: invalid ({error.validator})"
