"""Which OpenAI fields the embedded model honours (translated to llama-cpp-python's
arguments) and which it refuses, naming the field. The real model runs these paths in
tests/test_embedded_model.py."""

from __future__ import annotations

from typing import Any

import pytest

from personalization.backends import UnsupportedParameter
from personalization.backends.embedded_params import embedded_arguments
from store.errors import InvalidInput

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
NAMED = {"type": "function", "function": {"name": "f"}}
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


@pytest.mark.parametrize(
    ("sent", "arguments"),
    [
        ({}, {}),
        ({"response_format": {"type": "text"}}, {}),
        (
            {"response_format": {"type": "json_object"}},
            {"response_format": {"type": "json_object"}},
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": SCHEMA},
                }
            },
            {"response_format": {"type": "json_object", "schema": SCHEMA}},
        ),
        ({"tools": [TOOL], "tool_choice": NAMED}, {"tools": [TOOL], "tool_choice": NAMED}),
        ({"tools": [TOOL], "tool_choice": "required"}, {"tools": [TOOL], "tool_choice": NAMED}),
        ({"tools": [TOOL], "tool_choice": "none"}, {}),
        (
            {"presence_penalty": 0.5, "frequency_penalty": 0.1},
            {"presence_penalty": 0.5, "frequency_penalty": 0.1},
        ),
        (
            {
                "metadata": {"a": "b"},
                "store": False,
                "logprobs": False,
                "parallel_tool_calls": True,
                "stream_options": {"include_usage": True},
                "seed": 3,
                "stop": "x",
                "max_completion_tokens": 5,
                "modalities": ["text"],
                "logit_bias": {},
                "service_tier": "auto",
            },
            {},
        ),
    ],
)
def test_honoured(sent: dict[str, Any], arguments: dict[str, Any]) -> None:
    assert embedded_arguments(sent) == arguments


@pytest.mark.parametrize(
    ("sent", "parameter"),
    [
        ({"tools": [TOOL]}, "tools"),
        ({"tools": [TOOL], "tool_choice": "auto"}, "tool_choice"),
        (
            {"tools": [TOOL, {**TOOL, "function": {"name": "g"}}], "tool_choice": "required"},
            "tool_choice",
        ),
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}], "tool_choice": NAMED}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"store": True}, "store"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"functions": [TOOL["function"]]}, "functions"),
        ({"audio": {"voice": "x"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"response_format": {"type": "grammar"}}, "response_format"),
    ],
)
def test_refused_naming_the_parameter(sent: dict[str, Any], parameter: str) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        embedded_arguments(sent)
    assert refused.value.parameter == parameter
    assert refused.value.code == "unsupported_parameter"
    assert f"`{parameter}`" in refused.value.message


def test_tool_choice_must_name_a_given_tool() -> None:
    with pytest.raises(InvalidInput, match="not in `tools`"):
        embedded_arguments(
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "g"}}}
        )
    with pytest.raises(InvalidInput, match="`tools` is empty"):
        embedded_arguments({"tool_choice": NAMED})
