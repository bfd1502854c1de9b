"""Request bodies: parse JSON once, defensively, and validate it against a schema compiled at import."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema

from .errors import InvalidRequest


def _load_validator(name: str, drop_required: tuple[str, ...] = ()) -> jsonschema.Draft202012Validator:
    schema = json.loads(resources.files(__package__).joinpath(name).read_text())
    if drop_required:
        schema["required"] = [f for f in schema["required"] if f not in drop_required]
    return jsonschema.Draft202012Validator(schema)


CHAT = _load_validator("chat_request.schema.json")
MESSAGES = _load_validator("messages_request.schema.json")
COUNT_TOKENS = _load_validator("messages_request.schema.json", drop_required=("max_tokens",))


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python accepts them by default and providers would choke.
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


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
    return body


def validate(validator: jsonschema.Draft202012Validator, body: dict[str, Any]) -> None:
    """Raise InvalidRequest naming the first offending field, if any."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
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
