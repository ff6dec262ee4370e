"""Structured output: `response_format` on /v1 holds the demo model's reply to a JSON schema token
by token (constrained decoding), so even random weights write JSON that parses and matches;
formats Loupe cannot honour are refused naming the field; a model server is asked for the same."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from model import ChatRequest, GenerationOptions, Message
from model.constrained import ANY_OBJECT
from model.openai_wire.requests import request_body

# Every value is bounded (an enum, a small integer, a boolean, a short string), so that even a
# random model's reply ends well inside the token limit.
SCHEMA = {
    "type": "object",
    "properties": {
        "animal": {"enum": ["cat", "dog", "heron"]},
        "legs": {"type": "integer", "minimum": 0, "maximum": 8},
        "wild": {"type": "boolean"},
        "name": {"type": "string", "maxLength": 12},
    },
    "required": ["animal", "legs", "wild", "name"],
    "additionalProperties": False,
}
ANIMAL = {"type": "json_schema", "json_schema": {"name": "animal", "schema": SCHEMA}}
ASK = [{"role": "user", "content": "Describe an animal."}]


def matches(reply: str) -> bool:
    """Whether `reply` is a JSON object that SCHEMA allows."""
    value = json.loads(reply)
    return (
        set(value) == set(SCHEMA["required"])
        and value["animal"] in SCHEMA["properties"]["animal"]["enum"]
        and isinstance(value["legs"], int)
        and 0 <= value["legs"] <= 8
        and isinstance(value["wild"], bool)
        and isinstance(value["name"], str)
        and len(value["name"]) <= 12
    )


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="none")


def test_a_schema_holds_the_random_models_reply_whole_and_streamed(demo_app):
    api = client(demo_app[0])
    for seed in range(3):
        reply = api.chat.completions.create(
            model="", messages=ASK, response_format=ANIMAL, max_tokens=80, seed=seed
        )
        assert reply.choices[0].finish_reason == "stop"
        assert matches(reply.choices[0].message.content), reply.choices[0].message.content
    # Thinking asked for too: the schema is the whole reply.
    chunks = api.chat.completions.create(
        model="",
        messages=ASK,
        response_format=ANIMAL,
        max_tokens=80,
        stream=True,
        reasoning_effort="high",
    )
    pieces = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(getattr(piece, "reasoning_content", None) for piece in pieces)
    assert matches("".join(piece.content or "" for piece in pieces))
    anything = api.chat.completions.create(
        model="", messages=ASK, response_format={"type": "json_object"}, max_tokens=200
    )
    content = anything.choices[0].message.content
    assert content.startswith("{")
    if anything.choices[0].finish_reason == "stop":  # not cut by the limit: whole JSON
        assert isinstance(json.loads(content), dict)
    free = api.chat.completions.create(
        model="", messages=ASK, response_format={"type": "text"}, max_tokens=4
    )
    assert free.choices[0].message.content is not None


@pytest.mark.parametrize(
    "response_format, param, sentence",
    [
        ({"type": "xml"}, "response_format.type", "must be one of text, json_object and json_s"),
        ({"type": "json_schema"}, "response_format.json_schema", "must be given when its type"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}},
            "response_format.json_schema.schema",
            "The JSON schema cannot be used",
        ),
        ("json", "response_format", 'must be an object such as {"type": "json_object"}'),
    ],
)
def test_formats_loupe_cannot_honour_are_refused_naming_the_field(
    demo_app, response_format, param: str, sentence: str
):
    body = {"model": "", "messages": ASK, "response_format": response_format}
    refused = httpx.post(f"{demo_app[0]}/v1/chat/completions", json=body, timeout=30)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == param and sentence in error["message"], error


def test_a_model_server_is_asked_for_the_same_format():
    schema = json.dumps(SCHEMA)
    request = ChatRequest((Message("user", "Hi"),), GenerationOptions(response_schema=schema))
    sent = request_body(request, "gemma-4", refused={"response_format", "top_k"})
    assert sent["response_format"] == {  # never dropped, even if a field was refused before
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
    }
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    any_object = ChatRequest(request.messages, GenerationOptions(response_schema=ANY_OBJECT))
    assert request_body(any_object, "gemma-4")["response_format"] == {"type": "json_object"}
    assert "response_format" not in request_body(ChatRequest(request.messages), "gemma-4")
    with pytest.raises(ValueError, match="cannot think first"):
        GenerationOptions(response_schema=schema, thinking=True)
