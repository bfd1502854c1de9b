"""Request bodies: parse JSON once, defensively, and validate it against a schema compiled at import."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any, Callable

import jsonschema

from .errors import InvalidRequest


Check = Callable[[Any], bool]


class Schema:
    """A request schema: jsonschema is the validator of record; a compiled check passes valid bodies quickly.

    `quick(body)` is True only when the body certainly satisfies the schema (it covers the
    few keywords our schemas use, and is stricter where JSON Schema has corner cases, such as
    1.0 as an integer); anything else goes to jsonschema, which decides and names the fault.
    A schema using other keywords gets no quick check at all.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.validator = jsonschema.Draft202012Validator(schema)
        self.quick: Check = _compile(schema) or _never


def _load_schema(name: str, drop_required: tuple[str, ...] = ()) -> Schema:
    schema = json.loads(resources.files(__package__).joinpath(name).read_text())
    if drop_required:
        schema["required"] = [f for f in schema["required"] if f not in drop_required]
    return Schema(schema)


def _never(value: Any) -> bool:
    return False


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "null": (type(None),),
    "integer": (int,),  # JSON Schema also counts 1.0 as an integer: that case is left to jsonschema
    "number": (int, float),
}
_ANNOTATIONS = {"$schema", "title", "description"}


def _compile(schema: Any) -> Check | None:
    """A predicate exact for the keywords it knows (by exact Python type: bool is not a number); None if the
    schema uses any other keyword."""
    if not isinstance(schema, dict):
        return None
    checks: list[Check] = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword == "type":
            names = value if isinstance(value, list) else [value]
            if any(n not in _TYPES for n in names):
                return None
            allowed = frozenset(t for n in names for t in _TYPES[n])
            checks.append(lambda v, allowed=allowed: type(v) in allowed)
        elif keyword == "enum":
            if not all(type(e) is str for e in value):
                return None
            members = frozenset(value)
            checks.append(lambda v, members=members: type(v) is str and v in members)
        elif keyword == "required":
            names = tuple(value)
            checks.append(lambda v, names=names: type(v) is not dict or all(n in v for n in names))
        elif keyword == "properties":
            compiled = {name: _compile(sub) for name, sub in value.items()}
            if any(c is None for c in compiled.values()):
                return None
            checks.append(_properties(compiled))  # type: ignore[arg-type]
        elif keyword == "items":
            item = _compile(value)
            if item is None:
                return None
            checks.append(_items(item))
        elif keyword in ("minLength", "minItems") and type(value) is int:
            kind = str if keyword == "minLength" else list
            checks.append(lambda v, n=value, kind=kind: type(v) is not kind or len(v) >= n)
        elif keyword == "maxLength" and type(value) is int:
            checks.append(lambda v, n=value: type(v) is not str or len(v) <= n)
        elif keyword == "minimum" and type(value) in (int, float):
            checks.append(lambda v, b=value: type(v) not in (int, float) or v >= b)
        elif keyword == "maximum" and type(value) in (int, float):
            checks.append(lambda v, b=value: type(v) not in (int, float) or v <= b)
        else:
            return None
    if len(checks) == 1:
        return checks[0]

    def every(v: Any, checks: tuple[Check, ...] = tuple(checks)) -> bool:
        for check in checks:
            if not check(v):
                return False
        return True

    return every


def _properties(compiled: dict[str, Check]) -> Check:
    def properties(v: Any) -> bool:
        if type(v) is not dict:
            return True
        for name, item in v.items():
            check = compiled.get(name)
            if check is not None and not check(item):
                return False
        return True

    return properties


def _items(item: Check) -> Check:
    def items(v: Any) -> bool:
        if type(v) is not list:
            return True
        for x in v:
            if not item(x):
                return False
        return True

    return items


CHAT = _load_schema("chat_request.schema.json")
MESSAGES = _load_schema("messages_request.schema.json")
COUNT_TOKENS = _load_schema("messages_request.schema.json", drop_required=("max_tokens",))


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python accepts them by default and providers would choke.
    raise ValueError(f"{name} is not valid JSON")


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # We forward the bytes as sent: if we read the last "model" and the provider the first, the model
    # allowlist, pricing and the log would all describe a request other than the one served.
    # Costs 1-6 µs per body (measured on 2- and 20-message bodies).
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"duplicate key {name!r}")
            seen.add(name)
    return document


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_refuse_duplicate_keys)
# A high surrogate escape not followed by a low one, or a low one not preceded by a high one: no
# character, and no UTF-8 encoder can write it. Pairs (how ensure_ascii encoders spell an emoji) do
# not match, so ordinary bodies are never re-encoded; an escaped backslash before "u" can match
# wrongly, which _encodable then settles.
_LONE_SURROGATE_ESCAPE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F]")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object, or raise InvalidRequest."""
    if not raw:
        raise InvalidRequest("The request body is empty: send a JSON object.")
    try:
        text = raw.decode("utf-8")
        body = _DECODER.decode(text)
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.") from None
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply.") from None
    except ValueError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"The request body must be a JSON object, not {_json_type(body)}.")
    if _LONE_SURROGATE_ESCAPE.search(raw) is not None and not _encodable(body):
        raise InvalidRequest("The request body holds a lone UTF-16 surrogate escape (\\uD800-\\uDFFF), "
                             "which is not a character.")
    return body


def _encodable(body: dict[str, Any]) -> bool:
    """Whether every string decodes to real characters: JSON lets \\ud83d\\ude00 spell one, but not \\ud800 alone."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(schema: Schema, body: dict[str, Any]) -> None:
    """Raise InvalidRequest naming the first offending field, if any."""
    if schema.quick(body):
        return
    error = jsonschema.exceptions.best_match(schema.validator.iter_errors(body))
    if error is None:
        return
    field = _field_path(error)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        name = f"{field}.{missing}" if field else missing
        raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name)
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        raise InvalidRequest(
            f"Invalid type for '{field}': expected {expected}, got {_json_type(error.instance)}.", param=field
        )
    if error.validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        raise InvalidRequest(f"Invalid value for '{field}': must be one of {allowed}.", param=field)
    if error.validator == "minItems":
        raise InvalidRequest(f"Invalid '{field}': empty array; expected at least one item.", param=field)
    raise InvalidRequest(f"Invalid value for '{field}': {error.message[:200]}", param=field)


def _field_path(error: jsonschema.ValidationError) -> str:
    """`messages[0].role` style path of a validation error."""
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
