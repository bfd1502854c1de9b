"""Pure translation of OpenAI Chat Completions requests and replies to and from Anthropic Messages.

No I/O and no Tornado: dicts in, dicts out.

Request parameters, and what becomes of them:

- translated: model, messages, max_tokens / max_completion_tokens (the latter wins; DEFAULT_MAX_TOKENS
  when neither is sent), temperature, top_p, stop, user (or else safety_identifier) -> metadata.user_id,
  stream, tools, tool_choice, parallel_tool_calls.
- refused with InvalidRequest naming the parameter, because Anthropic cannot honour them and a silent
  drop would change the reply the client gets: n > 1, logprobs true, top_logprobs, logit_bias (non-empty),
  response_format other than {"type": "text"}, audio, modalities containing "audio", prediction,
  web_search_options, and the deprecated functions / function_call (and the "function" role).
- dropped, because ignoring them changes at most a sampling detail or OpenAI-side bookkeeping:
  presence_penalty, frequency_penalty, seed, stream_options (the caller reads include_usage),
  service_tier, store, metadata (OpenAI's stored-completion tags), prompt_cache_key, verbosity, and
  reasoning_effort (Anthropic's extended thinking needs a token budget and changes the reply shape,
  so the model's default is kept).
- anything else is refused as unrecognized, as OpenAI itself does. A message's `name` is dropped
  (Anthropic has no per-message names).

Values are passed as given where Anthropic's range differs (e.g. temperature above 1): Anthropic's own
400 then names the problem better than a guess at clamping would.

The reply side (whole replies, streams, errors) lives in `anthropic_stream`; this module re-exports it,
so callers import this one module.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from gateway.errors import InvalidRequest
from gateway.providers.anthropic_stream import (
    StreamTranslator,
    error_to_openai,
    from_anthropic,
    openai_usage,
    usage_from_anthropic,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "StreamTranslator",
    "error_to_openai",
    "from_anthropic",
    "openai_usage",
    "to_anthropic",
    "usage_from_anthropic",
]

DEFAULT_MAX_TOKENS = 4096

_DROPPED = frozenset(
    "presence_penalty frequency_penalty seed stream_options service_tier store metadata prompt_cache_key"
    " verbosity reasoning_effort".split()
)
_HANDLED = frozenset(
    "model messages max_tokens max_completion_tokens temperature top_p stop user safety_identifier stream tools"
    " tool_choice parallel_tool_calls n logprobs top_logprobs logit_bias response_format audio modalities"
    " prediction web_search_options functions function_call".split()
)


def to_anthropic(body: dict) -> dict:
    """Translate an OpenAI chat completion request into an Anthropic Messages request."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    for key in body:
        if key not in _HANDLED and key not in _DROPPED:
            raise InvalidRequest(f"Unrecognized request argument supplied: {key}", param=str(key))
    _refuse_unsupported(body)

    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model", "must be a non-empty string.")
    system, messages = _messages(body.get("messages"))
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": _max_tokens(body)}
    if system:
        out["system"] = system
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if not _is_number(value):
                raise _invalid(name, "must be a number.")
            out[name] = value
    stop = _stop_sequences(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop
    user = _user_id(body)
    if user is not None:
        out["metadata"] = {"user_id": user}
    stream = body.get("stream")
    if stream is not None:
        if not isinstance(stream, bool):
            raise _invalid("stream", "must be a boolean.")
        out["stream"] = stream
    tools = body.get("tools")
    if tools:
        out["tools"] = _tools(tools)
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"), has_tools=bool(tools))
    if choice is not None:
        out["tool_choice"] = choice
    return out


def _refuse_unsupported(body: dict) -> None:
    def refuse(name: str, why: str) -> NoReturn:
        raise _invalid(name, f"is not supported for Anthropic models: {why}")

    n = body.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        refuse("n", "they return exactly one choice.")
    if body.get("logprobs") is not None and body.get("logprobs") is not False:
        refuse("logprobs", "they return no log probabilities.")
    if body.get("top_logprobs") is not None:
        refuse("top_logprobs", "they return no log probabilities.")
    if body.get("logit_bias") not in (None, {}):
        refuse("logit_bias", "they take no token biases.")
    if body.get("response_format") not in (None, {"type": "text"}):
        refuse("response_format", 'only {"type": "text"} is available.')
    if body.get("audio") is not None:
        refuse("audio", "they produce no audio.")
    modalities = body.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or "audio" in modalities):
        refuse("modalities", 'only ["text"] is available.')
    for name, why in (
        ("prediction", "they take no predicted output."),
        ("web_search_options", "web search is not available through this endpoint."),
        ("functions", "use 'tools' instead."),
        ("function_call", "use 'tool_choice' instead."),
    ):
        if body.get(name) is not None:
            refuse(name, why)


def _max_tokens(body: dict) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            if not _is_int(value) or value < 1:
                raise _invalid(name, "must be a positive integer.")
            return value
    # Anthropic requires max_tokens; OpenAI's default is "as many as the model allows".
    return DEFAULT_MAX_TOKENS


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise _invalid("stop", "must be a string or an array of strings.")


def _user_id(body: dict) -> str | None:
    for name in ("user", "safety_identifier"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise _invalid(name, "must be a string.")
            return value
    return None


def _messages(raw: Any) -> tuple[str | None, list[dict]]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages", "must be a non-empty array.")
    system: list[str] = []
    turns: list[dict] = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _invalid(where, "must be an object.")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(t for t in _texts(msg.get("content"), f"{where}.content") if t)
        elif role == "user":
            _append(turns, "user", _user_content(msg.get("content"), f"{where}.content"))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_content(msg, where))
        elif role == "tool":
            # Anthropic carries tool results inside the next user turn.
            _append(turns, "user", [_tool_result(msg, where)])
        else:
            raise _invalid(f"{where}.role", "must be one of system, developer, user, assistant, tool.")
    if not turns:
        raise _invalid("messages", "must hold at least one user or assistant message.")
    return ("\n\n".join(system) or None), turns


def _append(turns: list[dict], role: str, content: str | list[dict]) -> None:
    # Anthropic requires user and assistant turns to alternate: merge neighbours of the same role.
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] = _as_blocks(turns[-1]["content"]) + _as_blocks(content)
    else:
        turns.append({"role": role, "content": content})


def _as_blocks(content: str | list[dict]) -> list[dict]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _texts(content: Any, where: str) -> list[str]:
    """The text of a content that may only hold text (system, developer, tool)."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list) or not content:
        raise _invalid(where, "must be a string or a non-empty array of text parts.")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise _invalid(f"{where}[{j}]", "must be a text part.")
        texts.append(part["text"])
    return texts


def _user_content(content: Any, where: str) -> str | list[dict]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise _invalid(where, "must be a string or a non-empty array of content parts.")
    blocks = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{at}.image_url"))
        elif isinstance(kind, str) and kind != "text":
            raise _invalid(f"{at}.type", f"'{kind}' is not supported for Anthropic models.")
        else:
            raise _invalid(at, "must be a text or image_url part.")
    return blocks


def _image(image: Any, where: str) -> dict:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise _invalid(f"{where}.url", "must be a string.")
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type = header.removesuffix(";base64")
        if not comma or media_type == header or not media_type:
            raise _invalid(f"{where}.url", "must be a base64 data URL.")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _invalid(f"{where}.url", "must be an http(s) or data URL.")


def _assistant_content(msg: dict, where: str) -> str | list[dict]:
    content = msg.get("content")
    calls = msg.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise _invalid(f"{where}.tool_calls", "must be an array.")
    if content is None:
        texts = []
    elif isinstance(content, str):
        texts = [content]
    elif isinstance(content, list) and content:
        texts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            key = "refusal" if kind == "refusal" else "text"
            if kind not in ("text", "refusal") or not isinstance(part.get(key), str):
                raise _invalid(f"{where}.content[{j}]", "must be a text part.")
            texts.append(part[key])
    else:
        raise _invalid(f"{where}.content", "must be a string, an array of text parts or null.")
    if not calls:
        if content is None:
            raise _invalid(f"{where}.content", "must be set when there are no tool_calls.")
        return content if isinstance(content, str) else [{"type": "text", "text": t} for t in texts]
    # Clients often send "" beside tool calls; Anthropic rejects empty text blocks.
    blocks = [{"type": "text", "text": t} for t in texts if t]
    blocks.extend(_tool_use(call, f"{where}.tool_calls[{k}]") for k, call in enumerate(calls))
    return blocks


def _tool_use(call: Any, where: str) -> dict:
    if not isinstance(call, dict):
        raise _invalid(where, "must be an object.")
    if call.get("type", "function") != "function":
        raise _invalid(f"{where}.type", "must be 'function'.")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{where}.id", "must be a non-empty string.")
    fn = call.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise _invalid(f"{where}.function.name", "must be a non-empty string.")
    arguments = fn.get("arguments")
    at = f"{where}.function.arguments"
    if arguments is None or arguments == "":
        tool_input: Any = {}  # a tool without parameters
    elif not isinstance(arguments, str):
        raise _invalid(at, "must be a JSON string.")
    else:
        try:
            tool_input = json.loads(arguments)
        except ValueError:
            raise _invalid(at, "is not valid JSON.") from None
    if not isinstance(tool_input, dict):
        raise _invalid(at, "must encode a JSON object.")
    return {"type": "tool_use", "id": call_id, "name": fn["name"], "input": tool_input}


def _tool_result(msg: dict, where: str) -> dict:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{where}.tool_call_id", "must be a non-empty string.")
    content = msg.get("content")
    texts = _texts(content, f"{where}.content")
    result: Any = content if isinstance(content, str) else [{"type": "text", "text": t} for t in texts]
    return {"type": "tool_result", "tool_use_id": call_id, "content": result}


def _tools(raw: Any) -> list[dict]:
    if not isinstance(raw, list):
        raise _invalid("tools", "must be an array.")
    tools = []
    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _invalid(f"{where}.type", "must be 'function' (in an object).")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _invalid(f"{where}.function.name", "must be a non-empty string.")
        entry: dict[str, Any] = {"name": fn["name"]}
        description = fn.get("description")
        if description is not None:
            if not isinstance(description, str):
                raise _invalid(f"{where}.function.description", "must be a string.")
            entry["description"] = description
        schema = fn.get("parameters")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        elif not isinstance(schema, dict):
            raise _invalid(f"{where}.function.parameters", "must be an object.")
        elif "type" not in schema:
            # OpenAI tolerates a schema without a type; Anthropic requires an object schema.
            schema = {"type": "object", **schema}
        entry["input_schema"] = schema
        tools.append(entry)
    return tools


def _tool_choice(raw: Any, parallel: Any, *, has_tools: bool) -> dict | None:
    if parallel is not None and not isinstance(parallel, bool):
        raise _invalid("parallel_tool_calls", "must be a boolean.")
    if raw is None:
        choice = None
    elif raw in ("auto", "none", "required"):
        choice = {"type": {"auto": "auto", "none": "none", "required": "any"}[raw]}
    elif (
        isinstance(raw, dict)
        and raw.get("type") == "function"
        and isinstance(raw.get("function"), dict)
        and isinstance(raw["function"].get("name"), str)
    ):
        choice = {"type": "tool", "name": raw["function"]["name"]}
    else:
        raise _invalid("tool_choice", "must be 'auto', 'none', 'required' or a named function.")
    if not has_tools:
        if choice is not None and choice["type"] in ("any", "tool"):
            raise _invalid("tool_choice", "needs 'tools'.")
        return None  # "auto" or "none" without tools changes nothing
    if parallel is False and (choice is None or choice["type"] != "none"):
        choice = choice or {"type": "auto"}
        choice["disable_parallel_tool_use"] = True
    return choice


def _invalid(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' {what}", param=param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
