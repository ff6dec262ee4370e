"""Speech recognition calls for intake: a recording's transcript, and the caption of what was
heard in audio sent to the model as audio."""

from __future__ import annotations

from model import NO_SPEECH, AsrError, AudioClip, SpeechRecognizer, Transcript


class Speech:
    """The one shared speech recognizer, as intake and the API call it."""

    def __init__(self, recognizer: SpeechRecognizer):
        self.recognizer = recognizer

    def transcribe(
        self, path: str, language: str | None = None, task: str = "transcribe"
    ) -> Transcript:
        """The transcript of an audio file, or a video's sound (AsrError with one sentence if
        it cannot be read); `language` and `task` as SpeechRecognizer.transcribe takes them."""
        return self.recognizer.transcribe(path, language=language, task=task)

    def caption(self, path: str | AudioClip, clips: int = 1) -> str:
        """What was heard in audio sent to the model as audio (a file, or decoded audio such as
        a video's soundtrack), shown beside the message; a recording the model takes as
        several `clips` (of at most 30 s each) says so."""
        try:
            if isinstance(path, AudioClip):
                transcript = self.recognizer.transcribe(path.samples, path.sample_rate)
            else:
                transcript = self.transcribe(path)
        except AsrError as exc:
            return f"🎤 {exc}"
        heard = f"Heard: “{transcript.text}”" if transcript.heard else NO_SPEECH
        split = f" (Gemma hears it as {clips} clips of at most 30 s.)" if clips > 1 else ""
        return f"🎤 {heard}{split}"
