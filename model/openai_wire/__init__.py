"""The OpenAI chat-completions wire format, both ways: the one place that knows it.

`RemoteEngine` uses it to speak to a model server (a ChatRequest as a request body; a server's
stream and errors as ReplyEvents); Loupe's own /v1 uses it to answer clients (a body's options
as GenerationOptions; ReplyEvents as chunks, completions and errors). Each concern keeps both
directions in one module, so the two sides cannot drift apart on field names, defaults or error
shapes. No HTTP library here: only dicts.
"""

from .client_messages import (
    WireMessage,
    decode_data_url,
    messages_from_body,
    stop_strings,
)
from .errors import (
    ERRORS,
    RETRY_AFTER_S,
    RequestError,
    WireError,
    engine_error_body,
    error_body,
    error_message,
    too_long,
)
from .replies import Completion, EventReader, delta_of, partial_suffix, sse, sse_data, usage
from .requests import (
    ChatFields,
    chat_fields,
    image_url,
    options_from_body,
    refused_fields,
    request_body,
)
from .tools import CallReader, call_to_wire, calls_to_wire

__all__ = [
    "CallReader",
    "ChatFields",
    "call_to_wire",
    "calls_to_wire",
    "chat_fields",
    "ERRORS",
    "RETRY_AFTER_S",
    "Completion",
    "EventReader",
    "RequestError",
    "WireError",
    "WireMessage",
    "decode_data_url",
    "delta_of",
    "engine_error_body",
    "error_body",
    "error_message",
    "image_url",
    "messages_from_body",
    "options_from_body",
    "partial_suffix",
    "refused_fields",
    "request_body",
    "sse",
    "sse_data",
    "stop_strings",
    "too_long",
    "usage",
]
