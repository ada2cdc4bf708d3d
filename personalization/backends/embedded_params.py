"""Which OpenAI request fields the embedded model (llama-cpp-python's chat handler for a
GGUF chat template) can honour, translated to its arguments; the rest are refused with
`unsupported_parameter`, because answering as if they had been honoured (no JSON, no tool
call, no logprobs) would silently break the app that asked for them.

What llama.cpp gives this handler: JSON output constrained by a grammar (a JSON Schema
becomes a grammar too), and a forced call of one named tool (its parameters' schema
becomes the grammar). The template cannot offer tools for the model to choose from, so
`tool_choice: "auto"` is refused; logprobs would need the logits of every position kept
(`logits_all`, gigabytes at this context size), so they are refused too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from personalization.backends import UnsupportedParameter
from store.errors import InvalidInput

# Hints that do not change the answer: accepted and ignored. (`parallel_tool_calls`: the
# embedded model makes at most one call, which satisfies true and false alike.)
IGNORED = frozenset(
    {
        "metadata",
        "parallel_tool_calls",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "safety_identifier",
        "service_tier",
        "stream_options",  # include_usage is honoured by the route from the token counts
    }
)
# Read from GenerationSettings, which already holds them.
RESOLVED = frozenset(
    {"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed"}
)
PENALTIES = frozenset({"presence_penalty", "frequency_penalty"})
_TOOL_ONLY_WHEN_NAMED = (
    "the embedded model calls a tool only when `tool_choice` names it (or is "
    '"required" with one tool); it cannot choose among tools. Use an OpenAI-compatible '
    "backend (TAILOR_MODEL_BACKEND=openai) for that"
)


def _response_format(value: Any) -> dict[str, Any] | None:
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if schema is None:
            return {"type": "json_object"}
        return {"type": "json_object", "schema": schema}
    raise UnsupportedParameter(
        "response_format", f"type {kind!r} is not text, json_object or json_schema"
    )


def _function_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidInput("`tools` must be a list", code="invalid_request")
    out: list[dict[str, Any]] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if (
            not isinstance(tool, Mapping)
            or tool.get("type") != "function"
            or not isinstance(function, Mapping)
            or not isinstance(function.get("name"), str)
        ):
            raise UnsupportedParameter("tools", "only `function` tools with a name can be called")
        out.append({"type": "function", "function": {"parameters": {}, **function}})
    return out


def _tool_arguments(passthrough: Mapping[str, Any]) -> dict[str, Any]:
    tools = passthrough.get("tools")
    choice = passthrough.get("tool_choice")
    if not tools or choice == "none":
        if isinstance(choice, Mapping) or choice == "required":
            raise InvalidInput(
                "`tool_choice` names a tool but `tools` is empty", code="invalid_request"
            )
        return {}
    functions = _function_tools(tools)
    if choice == "required" and len(functions) == 1:
        choice = {"type": "function", "function": {"name": functions[0]["function"]["name"]}}
    if not isinstance(choice, Mapping):
        raise UnsupportedParameter(
            "tools" if choice is None else "tool_choice", _TOOL_ONLY_WHEN_NAMED
        )
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else None
    if name not in {f["function"]["name"] for f in functions}:
        raise InvalidInput(
            f"`tool_choice` names {name!r}, which is not in `tools`", code="invalid_request"
        )
    return {"tools": functions, "tool_choice": {"type": "function", "function": {"name": name}}}


# Values that ask for nothing the embedded model lacks.
_HARMLESS: dict[str, Any] = {"store": False, "logprobs": False, "modalities": ["text"]}


def _harmless(name: str, value: Any) -> bool:
    if name == "logit_bias":
        return not value
    return name in _HARMLESS and value == _HARMLESS[name]


def embedded_arguments(passthrough: Mapping[str, Any]) -> dict[str, Any]:
    """llama-cpp-python `create_chat_completion` arguments for the app's OpenAI fields,
    or UnsupportedParameter naming the first one it cannot honour."""
    arguments: dict[str, Any] = {}
    for name, value in passthrough.items():
        if name in IGNORED or name in RESOLVED or name in ("tools", "tool_choice"):
            continue
        if name in PENALTIES:
            arguments[name] = value
        elif name == "response_format":
            response_format = _response_format(value)
            if response_format is not None:
                arguments["response_format"] = response_format
        elif _harmless(name, value):
            continue
        else:
            raise UnsupportedParameter(
                name, _WHY.get(name, "the embedded model has no such option")
            )
    arguments.update(_tool_arguments(passthrough))
    return arguments


_WHY = {
    "store": "nothing is stored for distillation or evals by the embedded model",
    "logprobs": "the embedded model does not keep the logits it would need",
    "top_logprobs": "the embedded model does not keep the logits it would need",
    "logit_bias": "token ids differ between models; the embedded model takes none",
    "functions": "the deprecated `functions` is not supported; send `tools`",
    "function_call": "the deprecated `function_call` is not supported; send `tool_choice`",
}
