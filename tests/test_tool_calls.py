"""Tool calls: tools declared with Gemma 4's chat template, the model's calls read from its own
syntax into OpenAI's `tool_calls`, `tool_choice` "required" and a named function held to a
grammar of calls (so even the random demo model calls, with arguments that match), results
taken back; on /v1 with the official client, and through a model server."""

from __future__ import annotations

import json
import random

import httpx
import jsonschema
import llguidance
import numpy as np
import openai
import pytest

from model import (
    ChatRequest,
    GenerationOptions,
    Message,
    RemoteEngine,
    RemoteEngineConfig,
    TextChunk,
    Tool,
    ToolCall,
)
from model.constrained import hf_tokenizer
from model.openai_wire.replies import EventReader
from model.openai_wire.requests import request_body
from model.prompts import build_inputs, render_prompt
from model.streaming import ReplyStreamer
from model.tool_calls import calls_grammar, gemma_value, parse_value, read_call
from tests.conftest import wait_until_ready

# Bounded values (a short string, an enum), so that a random model's call ends in a few dozen
# tokens.
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"enum": ["C", "F"]},
        "days": {"type": "integer"},
    },
    "required": ["city"],
}
CLOCK = {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "The weather.", "parameters": WEATHER},
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "The time.", "parameters": CLOCK},
    },
]
DECLARED = (
    Tool("get_weather", "The weather.", json.dumps(WEATHER)),
    Tool("get_time", "The time.", json.dumps(CLOCK)),
)
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# A sampled reply of calls holds one or more (22 to 40 tokens each; three took 109 of 120): a limit
# far past that, so that a reply is never cut inside a call. It costs nothing: replies end sooner.
CALLS_MAX_TOKENS = 600
SCHEMAS = {"get_weather": WEATHER, "get_time": CLOCK}
Q = '<|"|>'


def check(name: str, arguments: str) -> None:
    """The call names a declared tool, and its arguments are JSON its schema allows."""
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


def test_calls_are_read_from_gemmas_syntax_and_anything_else_is_not_a_call():
    text = f"call:get_weather{{city:{Q}Oslo, {{N}}:1{Q},days:3,unit:{Q}C{Q}}}"
    call = read_call(text, DECLARED)
    assert call == ToolCall(
        "get_weather", json.dumps({"city": "Oslo, {N}:1", "days": 3, "unit": "C"})
    )
    free = (Tool("free", "", "{}"),)  # a schema that allows anything: still an object
    assert read_call("call:free{a:1}", free) == ToolCall("free", '{"a": 1}')
    assert read_call("call:free[1,2]", free) is None
    value = {"a": [1, -2.5, True, None, {"b": "x"}], "c": "", "d": {}}
    assert parse_value(gemma_value(value)) == value
    for wrong in (
        "call:get_weather{days:3}",  # a required argument missing
        f"call:get_weather{{city:{Q}Paris{Q},unit:{Q}K{Q}}}",  # not in the enum
        f"call:get_weather{{city:{Q}Paris}}",  # a string not closed
        "call:get_weather{city:Paris}",  # not a value
        f"call:send_mail{{to:{Q}x{Q}}}",  # no such tool
        "the weather is fine",
    ):
        assert read_call(wrong, DECLARED) is None, wrong


def test_the_grammar_of_calls_lets_only_valid_calls_through(processor):
    """Random tokens among those the grammar allows always make calls that read back and
    match their schemas: of either tool, or of the named one only."""
    tokenizer = processor.tokenizer
    ends = [tokenizer.convert_tokens_to_ids(t) for t in ("<eos>", "<turn|>", "<|tool_response>")]
    grammar_tokenizer = hf_tokenizer(tokenizer, ends)
    seen = set()
    for named in ("", "get_time"):
        grammar = calls_grammar(DECLARED, named)
        assert not llguidance.LLMatcher.validate_grammar(grammar)
        for seed in range(6):
            chooser, matcher, reply = (
                random.Random(seed),
                llguidance.LLMatcher(grammar_tokenizer, grammar),
                [],
            )
            while not matcher.is_stopped() and len(reply) < 300:
                bits = np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8)
                allowed = np.flatnonzero(np.unpackbits(bits, bitorder="little")[: len(tokenizer)])
                endings = [token for token in allowed if token in ends]
                token = int(
                    chooser.choice(endings if endings and chooser.random() < 0.5 else allowed)
                )
                assert matcher.consume_token(token), matcher.get_error()
                reply.append(token)
            text = tokenizer.decode(reply, skip_special_tokens=False)
            pieces = [part.split("<tool_call|>")[0] for part in text.split("<|tool_call>")[1:]]
            assert pieces, text
            for piece in pieces:
                call = read_call(piece, DECLARED)
                assert call is not None, piece
                assert not named or call.name == named
                check(call.name, call.arguments)
                seen.add(call.name)
    assert seen == {"get_weather", "get_time"}


def test_the_chat_template_declares_tools_and_lays_out_calls_and_results(processor):
    call = ToolCall("get_weather", json.dumps({"city": "Paris"}), "call_1")
    messages = (
        Message("system", "Be brief."),
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "Sunny, 21 C <turn|>", tool_call_id="call_1"),
    )
    prompt = render_prompt(processor, messages, GenerationOptions(tools=DECLARED))
    assert prompt.startswith(
        "<bos><|turn>system\nBe brief."
        f"<|tool>declaration:get_weather{{description:{Q}The weather.{Q}"
    )
    assert "<tool|><|tool>declaration:get_time{" in prompt
    # The call, then its result in the same model turn, which the model goes on with.
    assert prompt.endswith(
        f"<|turn>model\n<|tool_call>call:get_weather{{city:{Q}Paris{Q}}}<tool_call|>"
        f"<|tool_response>response:get_weather{{value:{Q}Sunny, 21 C <turn|>{Q}}}<tool_response|>"
    )
    # A tool's result is text: a control token written in it does not end the turn.
    ids = build_inputs(processor, messages, GenerationOptions(tools=DECLARED))["input_ids"][0]
    turn_end = processor.tokenizer.convert_tokens_to_ids("<turn|>")
    assert ids.tolist().count(turn_end) == 2  # the system's and the user's turns only
    no_tools = render_prompt(
        processor, messages[:2], GenerationOptions(tools=DECLARED, tool_choice="none")
    )
    assert "<|tool>" not in no_tools


def test_required_and_named_calls_come_from_the_in_process_engine(engine):
    for choice, named in (("required", ""), ("auto", "get_time")):
        options = GenerationOptions(
            tools=DECLARED, tool_choice=choice, named_tool=named, max_new_tokens=CALLS_MAX_TOKENS
        )
        events = list(engine.submit(ChatRequest((Message("user", "Weather?"),), options)))
        calls = [event for event in events if isinstance(event, ToolCall)]
        assert calls and not [e for e in events if isinstance(e, TextChunk)], events
        for call in calls:
            check(call.name, call.arguments)
            assert call.name == (named or call.name)
    with pytest.raises(ValueError, match="No tool is named"):
        GenerationOptions(tools=DECLARED, named_tool="send_mail")


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="none")


def test_v1_returns_tool_calls_whole_and_streamed_and_takes_their_results_back(demo_app):
    api = client(demo_app[0])
    reply = api.chat.completions.create(
        model="", messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=CALLS_MAX_TOKENS
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls
    assert calls and len({call.id for call in calls}) == len(calls)
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        check(call.function.name, call.function.arguments)
    # Streamed: each call whole in one delta, numbered; the reason says calls.
    chunks = list(
        api.chat.completions.create(
            model="",
            messages=ASK,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
            max_tokens=CALLS_MAX_TOKENS,
            stream=True,
        )
    )
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert [d.index for d in deltas] == list(range(len(deltas))) and deltas
    for delta in deltas:
        assert delta.function.name == "get_time" and delta.id.startswith("call_")
        check("get_time", delta.function.arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # The call and its result go back; the model answers in text (auto: the demo never calls).
    first = calls[0]
    answer = api.chat.completions.create(
        model="",
        messages=[
            *ASK,
            {"role": "assistant", "content": None, "tool_calls": [first.model_dump()]},
            {"role": "tool", "tool_call_id": first.id, "content": "Sunny, 21 C"},
        ],
        tools=TOOLS,
        max_tokens=8,
    )
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls


@pytest.mark.parametrize(
    ("change", "param", "sentence"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "two words"}}]},
            "tools[0].function.name",
            "letters, digits, _ and -",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "string"}},
                    }
                ]
            },
            "tools[0].function.parameters",
            "JSON schema of an object",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"a": {"enum": ["<turn|>"]}},
                            },
                        },
                    }
                ]
            },
            "tools[0].function.parameters",
            "control tokens",
        ),
        ({"tools": TOOLS + TOOLS[:1]}, "tools[2].function.name", "Two tools are named get_weather"),
        ({"tool_choice": "required"}, "tool_choice", "no tools were given"),
        (  # a tool's text counts against the request's, as a message's does
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "description": "x" * 30_000}}
                ]
            },
            "messages",
            "characters of text",
        ),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "send"}}},
            "tool_choice",
            "not one of the tools",
        ),
        (
            {"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}},
            "tool_choice",
            "both tool calls",
        ),
        (
            {"messages": ASK + [{"role": "tool", "content": "21 C"}]},
            "messages[1].tool_call_id",
            "must name the call",
        ),
        (
            {
                "messages": ASK
                + [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{oops"},
                            }
                        ],
                    }
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
            "a JSON object, as text",
        ),
    ],
)
def test_tools_loupe_cannot_take_are_refused_naming_the_field(
    demo_app, change: dict, param: str, sentence: str
):
    body = {"model": "", "messages": ASK, "max_tokens": 4} | change
    refused = httpx.post(f"{demo_app[0]}/v1/chat/completions", json=body, timeout=30)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == param and sentence in error["message"], error


def test_a_model_server_gets_the_tools_and_its_calls_come_back_unchanged(demo_app, model_server):
    call = ToolCall("get_weather", json.dumps({"city": "Paris"}), "call_7")
    history = (
        Message("user", "Weather in Paris?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "Sunny", tool_call_id="call_7"),
    )
    options = GenerationOptions(tools=DECLARED, named_tool="get_time", max_new_tokens=4)
    body = request_body(ChatRequest(history, options), "gemma-4")
    assert body["tools"] == TOOLS
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": "Sunny"},
    ]
    # transformers serve renders the tools and the history with the checkpoint's template.
    served = RemoteEngine(RemoteEngineConfig(model_server.url, model=model_server.model))
    served.start()
    wait_until_ready(served)
    events = list(
        served.submit(ChatRequest(history, GenerationOptions(tools=DECLARED, max_new_tokens=4)))
    )
    assert "".join(e.text for e in events if isinstance(e, TextChunk)), events
    served.close()
    # Loupe's own /v1 as the server: the calls it makes come back with its ids, unchanged.
    remote = RemoteEngine(RemoteEngineConfig(f"{demo_app[0]}/v1"))
    remote.start()
    wait_until_ready(remote)
    options = GenerationOptions(
        tools=DECLARED, tool_choice="required", max_new_tokens=CALLS_MAX_TOKENS
    )
    events = list(remote.submit(ChatRequest((Message("user", "Time?"),), options)))
    remote.close()
    calls = [event for event in events if isinstance(event, ToolCall)]
    assert calls and all(call.id.startswith("call_") for call in calls), events
    for made in calls:
        check(made.name, made.arguments)


def test_streamed_call_pieces_from_a_server_are_put_together():
    reader = EventReader()
    pieces = [
        {
            "index": 0,
            "id": "a1",
            "type": "function",
            "function": {"name": "get_time", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"zone": '}},
        {
            "index": 1,
            "id": "b2",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        },
        {"index": 0, "function": {"arguments": '"UTC"}'}},
    ]
    events = [
        e
        for piece in pieces
        for e in reader.read({"choices": [{"delta": {"tool_calls": [piece]}}]})
    ]
    assert events == []  # whole calls only, once the reply ends
    events = reader.read({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]})
    assert events == [
        ToolCall("get_time", '{"zone": "UTC"}', "a1"),
        ToolCall("get_weather", '{"city": "Oslo"}', "b2"),
    ]


def test_the_streamer_passes_calls_on_and_keeps_a_call_it_cannot_read_as_text(processor):
    tokenizer = processor.tokenizer

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def token(name: str) -> list[int]:
        return [tokenizer.convert_tokens_to_ids(name)]

    texts, calls = [], []
    streamer = ReplyStreamer(
        tokenizer, lambda text, thinking: texts.append((text, thinking)), calls.append, DECLARED
    )
    quote = token(Q)
    streamer.add(token("<|channel>") + ids("thought\nThe time, then."))  # a thought left open
    streamer.add(token("<|tool_call>") + ids("call:get_time{zone:") + quote + ids("UTC"))
    streamer.add(quote + ids("}") + token("<tool_call|>") + ids("Asked."))
    streamer.add(token("<|tool_call>") + ids("call:get_time{zone:") + quote + ids("PST") + quote)
    streamer.add(ids("}") + token("<tool_call|>"))
    streamer.end()
    assert calls == [ToolCall("get_time", '{"zone": "UTC"}')]
    assert "".join(text for text, thinking in texts if thinking) == "The time, then."
    answer = "".join(text for text, thinking in texts if not thinking)
    assert answer == 'Asked.call:get_time{zone:"PST"}'  # not in the enum: shown, not called
