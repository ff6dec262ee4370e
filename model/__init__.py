"""Loading and driving the Gemma 4 model: the public names the app may use.

Nothing heavy loads at import time; torch and transformers are imported by the worker process.
"""

from .asr import NO_SPEECH, AsrError, SpeechRecognizer, Transcript
from .audio import split_at_pauses
from .config import DEFAULT_HANG_TIMEOUT_S, DEFAULT_MODEL_ID, ModelConfig
from .engine import DEMO_FALLBACK_NOTE, Engine, EngineStatus, ReplyStream
from .events import ContextTrimmed, EngineError, Finished, ReplyEvent, TextChunk, Timing
from .folder import folder_problem
from .loader import ModelInfo
from .messages import (
    DEFAULT_IMAGE_TOKENS,
    IMAGE_TOKEN_BUDGETS,
    AudioClip,
    ChatRequest,
    GenerationOptions,
    Message,
)

__all__ = [
    "DEMO_FALLBACK_NOTE",
    "DEFAULT_HANG_TIMEOUT_S",
    "DEFAULT_IMAGE_TOKENS",
    "DEFAULT_MODEL_ID",
    "IMAGE_TOKEN_BUDGETS",
    "AudioClip",
    "ChatRequest",
    "ContextTrimmed",
    "Engine",
    "EngineError",
    "EngineStatus",
    "Finished",
    "GenerationOptions",
    "Message",
    "ModelConfig",
    "ModelInfo",
    "NO_SPEECH",
    "AsrError",
    "SpeechRecognizer",
    "Transcript",
    "split_at_pauses",
    "ReplyEvent",
    "ReplyStream",
    "TextChunk",
    "Timing",
    "folder_problem",
]
