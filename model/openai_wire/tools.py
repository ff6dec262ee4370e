"""Tools and tool calls on the OpenAI wire, both ways: a body's `tools` and `tool_choice`, an
assistant message's `tool_calls`, and calls written back as `tool_calls` (a whole message's, or
a stream's deltas, each call whole in one delta) or read from a server's stream."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from ..messages import Tool, ToolCall, ToolChoice
from .errors import RequestError

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Gemma's control tokens (<|turn>, <turn|>, <|"|>, ...): a tool's schema may not hold them, as
# llama.cpp reads the schema's words as the template writes them (llama_prompt.py).
CONTROL_TOKEN = re.compile(r"<\|[^<>\s]{0,20}>|<[^<>\s]{0,20}\|>")
MAX_TOOLS = 128


@dataclass(frozen=True)
class ToolFields:
    """What a body asks of tools: the functions, and the choice (see GenerationOptions)."""

    tools: tuple[Tool, ...] = ()
    choice: ToolChoice = "auto"
    named: str = ""


def tool_fields(body: dict[str, Any]) -> ToolFields:
    """The body's `tools` and `tool_choice`, checked; RequestError names the wrong field."""
    tools = _tools(body.get("tools"))
    choice = body.get("tool_choice")
    if choice is None:
        return ToolFields(tools)
    if choice in ("auto", "none", "required"):
        if choice == "required" and not tools:
            raise RequestError("tool_choice is required, but no tools were given.", "tool_choice")
        return ToolFields(tools, choice)
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or choice.get("type") != "function":
        raise RequestError(
            'tool_choice must be auto, none, required or {"type": "function", "function": '
            '{"name": ...}}.',
            "tool_choice",
        )
    if name not in {tool.name for tool in tools}:
        raise RequestError(f"tool_choice names {name}, not one of the tools.", "tool_choice")
    return ToolFields(tools, "auto", name)


def _tools(value: Any) -> tuple[Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise RequestError(f"tools must be a list of at most {MAX_TOOLS} functions.", "tools")
    tools = tuple(_tool(item, f"tools[{index}]") for index, item in enumerate(value))
    names = [tool.name for tool in tools]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise RequestError(f"Two tools are named {name}.", f"tools[{index}].function.name")
    return tools


def _tool(item: Any, param: str) -> Tool:
    function = item.get("function") if isinstance(item, dict) else None
    if not isinstance(item, dict) or item.get("type") != "function" or not isinstance(
        function, dict
    ):
        raise RequestError(
            f'{param} must be {{"type": "function", "function": {{"name": ...}}}}.', param
        )
    name = function.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RequestError(
            f"{param}.function.name must be 1 to 64 letters, digits, _ and -.",
            f"{param}.function.name",
        )
    description = function.get("description", "")
    if not isinstance(description, str):
        raise RequestError(f"{param}.function.description must be a string.", param)
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    where = f"{param}.function.parameters"
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise RequestError(f"{where} must be a JSON schema of an object.", where)
    try:
        jsonschema.validators.validator_for(parameters).check_schema(parameters)
    except jsonschema.SchemaError as exc:
        raise RequestError(f"{where} is not a valid JSON schema: {exc.message}.", where) from None
    text = json.dumps(parameters, ensure_ascii=False)
    if CONTROL_TOKEN.search(text):
        raise RequestError(
            f"{where} must not hold Gemma's control tokens such as <|turn> or <turn|>.", where
        )
    return Tool(name, description, text)


def calls_from_wire(value: Any, param: str) -> tuple[ToolCall, ...]:
    """An assistant message's `tool_calls`: id, and a function's name and JSON arguments."""
    if not isinstance(value, list):
        raise RequestError(f"{param} must be a list of tool calls.", param)
    calls = []
    for index, item in enumerate(value):
        where = f"{param}[{index}]"
        function = item.get("function") if isinstance(item, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        arguments = function.get("arguments", "{}") if isinstance(function, dict) else None
        call_id = item.get("id", "") if isinstance(item, dict) else None
        if not isinstance(name, str) or not isinstance(call_id, str):
            raise RequestError(
                f'{where} must be {{"id": ..., "type": "function", "function": {{"name": ..., '
                '"arguments": "{...}"}}.',
                where,
            )
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise RequestError(
                f"{where}.function.arguments must be a JSON object, as text.",
                f"{where}.function.arguments",
            )
        calls.append(ToolCall(name, json.dumps(parsed, ensure_ascii=False), call_id))
    return tuple(calls)


def calls_to_wire(calls: tuple[ToolCall, ...] | list[ToolCall]) -> list[dict[str, Any]]:
    """Calls as a message's `tool_calls`."""
    return [call_to_wire(call) for call in calls]


def call_to_wire(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    """One call as OpenAI writes it; with `index`, as a stream's delta carries it."""
    wired: dict[str, Any] = {"index": index} if index is not None else {}
    function = {"name": call.name, "arguments": call.arguments}
    return wired | {"id": call.id, "type": "function", "function": function}


def choice_to_wire(choice: ToolChoice, named: str) -> Any:
    """A body's `tool_choice`."""
    return {"type": "function", "function": {"name": named}} if named else choice


@dataclass
class CallReader:
    """A server's streamed `tool_calls` deltas put together: the first of a call's deltas has
    its id and name, the rest add to its arguments; calls come whole at `finished()`."""

    _calls: dict[int, dict[str, str]] = field(default_factory=dict)

    def read(self, deltas: Any) -> None:
        for position, delta in enumerate(deltas if isinstance(deltas, list) else ()):
            if not isinstance(delta, dict):
                continue
            index = delta.get("index", position)
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            function = delta.get("function") or {}
            call["id"] = delta.get("id") or call["id"]
            call["name"] = function.get("name") or call["name"]
            call["arguments"] += function.get("arguments") or ""

    def finished(self) -> list[ToolCall]:
        calls = [
            ToolCall(call["name"], call["arguments"] or "{}", call["id"])
            for _, call in sorted(self._calls.items())
        ]
        self._calls = {}
        return calls
