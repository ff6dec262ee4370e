"""Loading and driving the Gemma 4 model: the public names the app may use.

Nothing heavy loads at import time; torch and transformers are imported by the worker process.
"""

from .asr import NO_SPEECH, AsrError, SpeechRecognizer, Transcript
from .audio import split_at_pauses
from .config import (
    DEFAULT_ENGINE_CONCURRENCY,
    DEFAULT_HANG_TIMEOUT_S,
    DEFAULT_MODEL_ID,
    ModelConfig,
    RemoteEngineConfig,
)
from .detail import MAX_IMAGE_PIXELS, ImageDetail
from .engine import BUSY, Engine, EngineStatus, ModelInfo, QueueSlot, ReplyStream
from .events import ContextTrimmed, EngineError, Finished, ReplyEvent, TextChunk, Timing
from .folder import folder_problem
from .local_engine import DEMO_FALLBACK_NOTE, LocalEngine
from .messages import (
    AUTO_IMAGE_TOKENS,
    DEFAULT_IMAGE_TOKENS,
    DEFAULT_VIDEO_FRAME_TOKENS,
    IMAGE_TOKEN_BUDGETS,
    VIDEO_FRAME_TOKEN_BUDGETS,
    AudioClip,
    ChatRequest,
    GenerationOptions,
    Message,
    Tool,
    ToolCall,
    VideoClip,
)
from .remote_engine import RemoteEngine


def open_engine(config: ModelConfig | RemoteEngineConfig, queue_size: int) -> Engine:
    """The engine a configuration asks for: a server's, or the in-process one. Not started."""
    if isinstance(config, RemoteEngineConfig):
        return RemoteEngine(config, queue_size=queue_size)
    return LocalEngine(config, queue_size=queue_size)


__all__ = [
    "AUTO_IMAGE_TOKENS",
    "BUSY",
    "DEMO_FALLBACK_NOTE",
    "DEFAULT_ENGINE_CONCURRENCY",
    "DEFAULT_HANG_TIMEOUT_S",
    "DEFAULT_IMAGE_TOKENS",
    "DEFAULT_MODEL_ID",
    "DEFAULT_VIDEO_FRAME_TOKENS",
    "IMAGE_TOKEN_BUDGETS",
    "MAX_IMAGE_PIXELS",
    "VIDEO_FRAME_TOKEN_BUDGETS",
    "AudioClip",
    "ChatRequest",
    "ContextTrimmed",
    "Engine",
    "EngineError",
    "EngineStatus",
    "Finished",
    "GenerationOptions",
    "ImageDetail",
    "LocalEngine",
    "Message",
    "Tool",
    "ToolCall",
    "ModelConfig",
    "ModelInfo",
    "NO_SPEECH",
    "QueueSlot",
    "RemoteEngine",
    "RemoteEngineConfig",
    "AsrError",
    "SpeechRecognizer",
    "Transcript",
    "VideoClip",
    "split_at_pauses",
    "ReplyEvent",
    "ReplyStream",
    "TextChunk",
    "Timing",
    "folder_problem",
    "open_engine",
]
