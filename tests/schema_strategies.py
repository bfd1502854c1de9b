"""Hypothesis strategies for "any value this JSON Schema allows", for the keywords our request schemas use.

hypothesis-jsonschema would be the library for this, but its 0.23 release reaches into Hypothesis
internals that Hypothesis 6.1xx removed (`AttributeError: 'many' object has no attribute 'more'`).
Our schemas use eight keywords; this covers exactly those and refuses any other, so a new keyword
cannot silently go ungenerated.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_IGNORED = {"$schema", "title", "description"}
_KNOWN = {"type", "enum", "const", "required", "properties", "items", "minItems", "minLength", "maxLength",
          "minimum", "maximum"}

# Any JSON value, for properties a schema leaves open (their content is not ours to check).
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                     | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                     max_leaves=6)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    unknown = set(schema) - _KNOWN - _IGNORED
    if unknown:
        raise ValueError(f"no strategy for the keywords {sorted(unknown)}")
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type")
    if kinds is None:
        return _json
    if isinstance(kinds, list):
        return st.one_of([from_schema({**schema, "type": kind}) for kind in kinds])
    return _BY_TYPE[kinds](schema)


def _object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    return st.fixed_dictionaries(
        {name: from_schema(properties.get(name, {})) for name in required},
        optional={name: from_schema(sub) for name, sub in properties.items() if name not in required})


def _array(schema: dict[str, Any]) -> st.SearchStrategy[list[Any]]:
    low = schema.get("minItems", 0)
    return st.lists(from_schema(schema.get("items", {})), min_size=low, max_size=low + 3)


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 12), 12))


def _integer(schema: dict[str, Any]) -> st.SearchStrategy[int]:
    return st.integers(schema.get("minimum"), schema.get("maximum"))


def _number(schema: dict[str, Any]) -> st.SearchStrategy[float | int]:
    low, high = schema.get("minimum"), schema.get("maximum")
    return st.floats(low, high, allow_nan=False, allow_infinity=False) | st.integers(
        None if low is None else int(low) + (low % 1 > 0), None if high is None else int(high))


_BY_TYPE = {
    "object": _object, "array": _array, "string": _string, "integer": _integer, "number": _number,
    "boolean": lambda schema: st.booleans(), "null": lambda schema: st.none(),
}
