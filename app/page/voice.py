"""Voice: recordings and audio files become text in the box, or audio for Gemma with a caption."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import soundfile

from model import NO_SPEECH, AsrError, SpeechRecognizer

from ..intake.files import file_path
from ..intake.speech import Speech
from .box import with_file
from .errors import refused
from .push_to_talk import MicrophoneUnavailable, PushToTalk

TRANSCRIBE = "Transcribe into the box"
SEND_AUDIO = "Send audio to Gemma"
VOICE_ROUTES = (TRANSCRIBE, SEND_AUDIO)
# Transcribing first lets the person see and correct what was heard before anything is sent.
DEFAULT_VOICE_ROUTE = TRANSCRIBE


class Voice(Speech):
    """The page's speech front end: the shared recognizer (as intake calls it), the box's
    recordings, and the local microphone."""

    def __init__(self, recognizer: SpeechRecognizer, push_to_talk: PushToTalk | None = None):
        super().__init__(recognizer)
        self.push_to_talk = push_to_talk or PushToTalk()
        self._recordings = Path(tempfile.mkdtemp(prefix="loupe-recordings-"))

    def transcribe_endpoint(self, audio: str) -> str:
        """/transcribe: an audio file -> its transcript ("" when no speech is heard)."""
        if not audio:
            raise refused("Send an audio file to transcribe.")
        try:
            return self.transcribe(audio).text
        except AsrError as exc:
            raise refused(str(exc)) from None

    def into_box(self, value: dict, audio_paths: list[str]) -> dict:
        """The box with these audio files replaced by their transcripts, for checking first."""
        texts = []
        for path in audio_paths:
            try:
                transcript = self.transcribe(path)
            except AsrError as exc:
                gr.Warning(str(exc))
                continue
            if transcript.heard:
                texts.append(transcript.text)
            else:
                gr.Warning(f"{Path(path).name}: {NO_SPEECH}")
        kept = [item for item in value.get("files") or [] if file_path(item) not in audio_paths]
        text = " ".join(part for part in [(value.get("text") or "").strip(), *texts] if part)
        return {"text": text, "files": kept}

    def take_recording(self, recording: str | None, value: dict | None, route: str) -> tuple:
        """A finished recording goes into the box: as text, or as an audio attachment."""
        if not recording:
            return gr.skip(), gr.skip()
        if route == SEND_AUDIO:
            return with_file(value, recording), None
        return self.into_box(with_file(value, recording), [recording]), None

    def start_local(self) -> None:
        """Push-to-talk pressed: start recording from this machine's microphone."""
        try:
            self.push_to_talk.start()
        except MicrophoneUnavailable as exc:
            gr.Warning(str(exc))

    def stop_local(self, value: dict | None, route: str) -> Any:
        """Push-to-talk released: the recording goes the chosen route."""
        if not self.push_to_talk.recording:  # it never started, and start_local said why
            return gr.skip()
        try:
            clip = self.push_to_talk.stop()
        except MicrophoneUnavailable as exc:
            gr.Warning(str(exc))
            return gr.skip()
        with tempfile.NamedTemporaryFile(suffix=".wav", dir=self._recordings, delete=False) as file:
            soundfile.write(file, clip.samples, clip.sample_rate, format="WAV")
        return self.take_recording(file.name, value, route)[0]
