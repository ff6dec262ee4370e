"""Tool calls in Gemma 4's own format, both ways.

The model writes a call as `<|tool_call>call:NAME{key:value,...}<tool_call|>`: keys bare,
strings between `<|"|>` tokens, numbers, true, false, null, `{...}` and `[...]` as in JSON.
`read_call` turns what it wrote into a ToolCall with JSON arguments, or None where the text is
not a call of a declared tool with arguments its schema allows (the reply then keeps the text:
see the README). `calls_grammar` is the grammar that holds a reply to calls alone (tool_choice
"required" or a named function), in this syntax, each call's arguments held to its tool's
schema; `template_tools` is the tools as chat templates take them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from .messages import Tool, ToolCall

QUOTE = '<|"|>'  # Gemma's string delimiter: one token, so a string may hold any character
CALL = re.compile(r"\s*call:(?P<name>[A-Za-z0-9_.-]+)(?P<arguments>\{.*\})\s*", re.S)
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
BARE_KEY = re.compile(r"[^:{}\[\],<>\s]+")
# What a generated string or number may be, so that a call always ends: long enough for any
# argument a person writes by hand, shorter than a reply's limit.
STRING_CHARS = 2000
NUMBER_DIGITS = 18
KEY = "/[A-Za-z_][A-Za-z0-9_]{0,63}/"  # a key the grammar writes where the schema names none


class CallSyntaxError(ValueError):
    """Text that is not a call in Gemma's syntax."""


def template_tools(tools: tuple[Tool, ...]) -> list[dict[str, Any]] | None:
    """The tools as chat templates take them (OpenAI's shape), or None for none."""
    if not tools:
        return None
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": json.loads(tool.parameters),
            },
        }
        for tool in tools
    ]


def template_call(call: ToolCall) -> dict[str, Any]:
    """An assistant's call as chat templates take it: arguments as a mapping."""
    arguments = json.loads(call.arguments) if call.arguments else {}
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def read_call(text: str, tools: tuple[Tool, ...]) -> ToolCall | None:
    """The call `text` (what came between `<|tool_call>` and `<tool_call|>`) makes, or None if
    it names no declared tool or its arguments do not parse or do not match the schema."""
    found = CALL.fullmatch(text)
    if found is None:
        return None
    tool = next((tool for tool in tools if tool.name == found["name"]), None)
    if tool is None:
        return None
    try:
        arguments = parse_value(found["arguments"])
        jsonschema.validate(arguments, arguments_schema(tool))
    except (CallSyntaxError, jsonschema.ValidationError, jsonschema.SchemaError):
        return None
    return ToolCall(tool.name, json.dumps(arguments, ensure_ascii=False))


def arguments_schema(tool: Tool) -> dict[str, Any]:
    """The schema a call's arguments must match: the tool's, and an object whatever it says."""
    return {"type": "object"} | json.loads(tool.parameters)


def call_text(call: ToolCall) -> str:
    """A call as the model writes it (without the call tokens): what a reply shows of a call
    that could not be passed on, and how a kept call reads."""
    return f"call:{call.name}{gemma_value(json.loads(call.arguments))}"


def gemma_value(value: Any) -> str:
    """A JSON value in Gemma's syntax (keys bare, strings between <|"|>)."""
    if isinstance(value, str):
        return QUOTE + value + QUOTE
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{gemma_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(gemma_value(item) for item in value) + "]"
    return json.dumps(value)


def parse_value(text: str) -> Any:
    """One value in Gemma's syntax, the whole of `text`; CallSyntaxError otherwise."""
    value, end = _value(text, 0)
    if end != len(text):
        raise CallSyntaxError(f"unexpected text at {end}")
    return value


def _value(text: str, at: int) -> tuple[Any, int]:
    if text.startswith(QUOTE, at):
        end = text.find(QUOTE, at + len(QUOTE))
        if end < 0:
            raise CallSyntaxError("a string is not closed")
        return text[at + len(QUOTE) : end], end + len(QUOTE)
    if text.startswith("{", at):
        return _object(text, at + 1)
    if text.startswith("[", at):
        return _array(text, at + 1)
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, at):
            return value, at + len(word)
    number = NUMBER.match(text, at)
    if number is None:
        raise CallSyntaxError(f"no value at {at}")
    return json.loads(number.group()), number.end()


def _object(text: str, at: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    if text.startswith("}", at):
        return result, at + 1
    while True:
        if text.startswith(QUOTE, at):
            key, at = _value(text, at)
        else:
            bare = BARE_KEY.match(text, at)
            if bare is None:
                raise CallSyntaxError(f"no key at {at}")
            key, at = bare.group(), bare.end()
        if not text.startswith(":", at):
            raise CallSyntaxError(f"no colon at {at}")
        result[key], at = _value(text, at + 1)
        if text.startswith("}", at):
            return result, at + 1
        if not text.startswith(",", at):
            raise CallSyntaxError(f"no comma at {at}")
        at += 1


def _array(text: str, at: int) -> tuple[list[Any], int]:
    result: list[Any] = []
    if text.startswith("]", at):
        return result, at + 1
    while True:
        item, at = _value(text, at)
        result.append(item)
        if text.startswith("]", at):
            return result, at + 1
        if not text.startswith(",", at):
            raise CallSyntaxError(f"no comma at {at}")
        at += 1


# -- the grammar of calls ------------------------------------------------------------------------


def calls_grammar(tools: tuple[Tool, ...], named: str = "") -> str:
    """A Lark grammar (llguidance's) for a reply of one or more calls: of `named`, or of any of
    `tools`; each call's arguments match its tool's schema, written as Gemma writes them."""
    rules = _Rules()
    chosen = [tool for tool in tools if not named or tool.name == named]
    calls = " | ".join(
        rules.add(
            f'<|tool_call> "call:{tool.name}" '
            f"{rules.schema(arguments_schema(tool))} <tool_call|>"
        )
        for tool in chosen
    )
    return "%llguidance {}\nstart: call+\ncall: " + calls + "\n" + rules.text()


class _Rules:
    """Lark rules built from JSON schemas, named r0, r1, ..."""

    def __init__(self) -> None:
        self.rules: list[str] = []
        self.any_value = ""  # the rule for any value, once a schema needs it

    def add(self, body: str) -> str:
        self.rules.append(body)
        return f"r{len(self.rules) - 1}"

    def text(self) -> str:
        return "".join(f"r{index}: {body}\n" for index, body in enumerate(self.rules))

    def schema(self, schema: Any) -> str:
        """A rule for the values `schema` allows (anything, where it says nothing)."""
        if not isinstance(schema, dict) or not schema:
            return self.add(self._any())
        if "const" in schema:
            return self.add(_literal(schema["const"]))
        if "enum" in schema:
            return self.add(" | ".join(_literal(item) for item in schema["enum"]))
        choices = schema.get("anyOf") or schema.get("oneOf")
        if choices:
            return self.add(" | ".join(self.schema(choice) for choice in choices))
        kinds = schema.get("type")
        if isinstance(kinds, list):
            return self.add(" | ".join(self.schema({**schema, "type": kind}) for kind in kinds))
        if kinds == "string":
            low = int(schema.get("minLength", 0))
            high = int(schema.get("maxLength", STRING_CHARS))
            text = f"/[^\\x00-\\x08\\x0b-\\x1f]{{{low},{high}}}/"
            return self.add(f"<|\"|> {text} <|\"|>")
        if kinds == "integer":
            return self.add(f"/-?(0|[1-9][0-9]{{0,{NUMBER_DIGITS - 1}}})/")
        if kinds == "number":
            digits = NUMBER_DIGITS - 1
            return self.add(f"/-?(0|[1-9][0-9]{{0,{digits}}})(\\.[0-9]{{1,{digits}}})?/")
        if kinds == "boolean":
            return self.add('"true" | "false"')
        if kinds == "null":
            return self.add('"null"')
        if kinds == "array":
            item = self.schema(schema.get("items", {}))
            return self.add(f'"[" ({item} ("," {item})*)? "]"')
        if kinds == "object" or "properties" in schema:
            return self._object(schema)
        return self.add(self._any())

    def _object(self, schema: dict[str, Any]) -> str:
        """Keys in order (as the chat template writes them, sorted), the required ones always,
        commas between the present ones."""
        if "properties" not in schema:  # any keys, any values (none declared: "{}" only)
            value = self._any()
            return self.add(f'"{{" ({KEY} ":" {value} ("," {KEY} ":" {value})*)? "}}"')
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        pairs = [
            (f"{json.dumps(key + ':')} {self.schema(properties[key])}", key in required)
            for key in sorted(properties)
            if re.fullmatch(BARE_KEY, key)
        ]
        # first: the pairs from i on, none written yet; rest: the same after one was written.
        first, rest = "", ""
        for index in reversed(range(len(pairs))):
            pair, needed = pairs[index]
            with_rest = f"{pair} {rest}".strip()
            if needed:
                new_first = with_rest
            else:
                new_first = f"({with_rest} | {first})" if first else f"({with_rest})?"
            first = self.add(new_first)
            if index:  # the first pair is never after another
                rest = self.add(f'"," {with_rest}' if needed else f'("," {with_rest})?')
        return self.add(f'"{{" {first} "}}"' if first else '"{" "}"')

    def _any(self) -> str:
        """Any value: a string, number, true, false, null, or an array or object of values."""
        if not self.any_value:
            item = self.any_value = self.add("")  # filled below, as it refers to itself
            text = f"/[^\\x00-\\x08\\x0b-\\x1f]{{0,{STRING_CHARS}}}/"
            number = f"/-?(0|[1-9][0-9]{{0,{NUMBER_DIGITS - 1}}})(\\.[0-9]{{1,9}})?/"
            self.rules[-1] = (
                f'<|"|> {text} <|"|> | {number} | "true" | "false" | "null" '
                f'| "[" ({item} ("," {item})*)? "]" '
                f'| "{{" ({KEY} ":" {item} ("," {KEY} ":" {item})*)? "}}"'
            )
        return self.any_value


def _literal(value: Any) -> str:
    """A Lark expression for exactly `value` in Gemma's syntax."""
    if isinstance(value, str):
        return f'<|"|> {json.dumps(value)} <|"|>' if value else '<|"|> <|"|>'
    return json.dumps(gemma_value(value))
