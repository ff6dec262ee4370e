"""Voice: both routes with real speech and real faster-whisper, splitting, push-to-talk."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import soundfile

from app.config import AppConfig
from app.history import Conversation, History
from app.page.chat_events import ChatHandlers
from app.page.push_to_talk import NO_MICROPHONE, NO_PORTAUDIO, MicrophoneUnavailable, PushToTalk
from app.page.voice import SEND_AUDIO, TRANSCRIBE, Voice
from bench.samples import speak
from model import AudioClip, GenerationOptions, split_at_pauses
from model.audio import AUDIO_SAMPLE_RATE_HZ, MAX_AUDIO_CLIP_S, to_model_rate
from model.prompts import build_inputs, render_prompt
from tests.conftest import MAX_WER, QUESTION, word_error_rate

SENTENCES = [
    "the red car is parked next to the old stone bridge",
    "a small dog is running across the green field",
    "please describe the picture in a few short words",
    "the weather today is cold and the sky is grey",
]
LONG_RECORDING_S = 75.0
SETTINGS = ("", 1.0, 0.95, 64, 16, False, 280)


@pytest.fixture(scope="module")
def voice(recognizer) -> Voice:
    return Voice(recognizer)


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """75 s of sentences, each followed by a one-second pause, at 22.05 kHz."""
    folder = tmp_path_factory.mktemp("long")
    pieces = [
        soundfile.read(speak(s, folder / f"{i}.wav", gap_s=1.0), dtype="float32")
        for i, s in enumerate(SENTENCES)
    ]
    rate = pieces[0][1]
    one_round = np.concatenate([samples for samples, _ in pieces])
    rounds = int(np.ceil(LONG_RECORDING_S * rate / len(one_round)))
    samples = np.tile(one_round, rounds)[: int(LONG_RECORDING_S * rate)]
    path = folder / "long.wav"
    soundfile.write(path, samples, rate)
    return path


def test_transcribe_route_puts_the_words_in_the_box(voice: Voice, spoken_question: Path):
    box, microphone = voice.take_recording(
        str(spoken_question), {"text": "", "files": []}, TRANSCRIBE
    )
    assert microphone is None and box["files"] == []
    assert word_error_rate(QUESTION, box["text"]) < MAX_WER, box["text"]


def test_send_audio_route_attaches_the_recording(voice: Voice, spoken_question: Path):
    box, _ = voice.take_recording(
        str(spoken_question), {"text": "Listen:", "files": []}, SEND_AUDIO
    )
    assert box == {"text": "Listen:", "files": [str(spoken_question)]}


@pytest.fixture
def handlers(engine, voice: Voice, tmp_path: Path) -> ChatHandlers:
    return ChatHandlers(engine, voice, History(tmp_path), AppConfig())


def test_an_uploaded_file_in_transcribe_mode_is_turned_into_text_not_sent(
    handlers: ChatHandlers, spoken_question: Path
):
    value = {"text": "", "files": [str(spoken_question)]}
    [(shown, box, conversation_id, *_)] = handlers.respond(value, "", TRANSCRIBE, *SETTINGS)
    assert conversation_id == "" and handlers.history.list() == []  # nothing sent yet
    assert word_error_rate(QUESTION, box["text"]) < MAX_WER and box["files"] == []


def test_audio_sent_to_gemma_carries_a_caption_of_what_was_heard(
    handlers: ChatHandlers, spoken_question: Path
):
    value = {"text": "", "files": [str(spoken_question)]}
    updates = list(handlers.respond(value, "", SEND_AUDIO, *SETTINGS))
    shown, _, conversation_id, *_ = updates[-2]  # the last update that shows the chat
    kept = handlers.history.get(conversation_id).messages[0].attachments[0]
    assert shown[0] == {
        "role": "user",
        "content": {"path": kept.path, "alt_text": "Recording you sent: question.wav"},
    }
    caption = shown[1]["content"]
    assert caption == kept.caption
    assert caption.startswith("🎤 Heard: “") and caption.endswith("”")
    assert word_error_rate(QUESTION, caption.removeprefix("🎤 Heard: ")) < MAX_WER, caption
    assert updates[0][1] is None  # the recording leaves the box as the reply starts


def test_silence_sent_as_audio_is_captioned_no_speech(voice: Voice, tmp_path: Path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros(32_000, dtype=np.float32), 16_000)
    assert voice.caption(str(path)) == "🎤 No speech heard."


def test_a_75_s_recording_is_split_at_pauses_into_clips_the_model_accepts(long_recording: Path):
    samples, rate = soundfile.read(long_recording, dtype="float32")
    clips = split_at_pauses(AudioClip(samples, rate))
    assert len(clips) == 3
    assert all(clip.sample_rate == AUDIO_SAMPLE_RATE_HZ for clip in clips)
    assert all(clip.duration_s <= MAX_AUDIO_CLIP_S for clip in clips)
    assert abs(sum(clip.duration_s for clip in clips) - LONG_RECORDING_S) < 0.01
    cuts = np.cumsum([len(clip.samples) for clip in clips])[:-1]
    whole = np.concatenate([clip.samples for clip in clips])
    window = AUDIO_SAMPLE_RATE_HZ // 20  # 50 ms either side of each cut is silent
    for cut in cuts:
        assert np.abs(whole[cut - window : cut + window]).max() < 0.01, cut / AUDIO_SAMPLE_RATE_HZ


def test_the_long_recording_reaches_the_model_as_several_clips_in_one_message(
    handlers: ChatHandlers, long_recording: Path, processor
):
    value = {"text": "Summarise this.", "files": [str(long_recording)]}
    intake = handlers.intake
    kept = intake.stored_user_message(value["text"], intake.message_files(value))
    [message] = intake.model_messages(Conversation("", "", 0, 0, (kept,)), system_prompt="")
    assert len(message.audio) == 3
    # The caption holds the whole recording's words and tells the person it was split.
    [attachment] = kept.attachments
    assert attachment.caption.endswith("”" + " (Gemma hears it as 3 clips of at most 30 s.)")
    # About 5 in 75 s, 2 in the first clip: more than 2 means later clips were heard too.
    # (Not "at least 4": faster-whisper samples again at a higher temperature where its greedy
    # reading of a stretch looks wrong, so one of them may come out otherwise.)
    assert attachment.caption.count("bridge") >= 3
    prompt = render_prompt(processor, [message], GenerationOptions())
    assert "<|turn>user\n<|audio|><|audio|><|audio|>Summarise this.<turn|>" in prompt
    ids = build_inputs(processor, [message], GenerationOptions())["input_ids"][0].tolist()
    assert ids.count(processor.tokenizer.convert_tokens_to_ids("<|audio>")) == 3
    audio_tokens = ids.count(processor.tokenizer.convert_tokens_to_ids("<|audio|>"))
    # 40 ms per token, nothing dropped; each clip's last partial frame is one more token
    assert round(LONG_RECORDING_S * 25) <= audio_tokens <= round(LONG_RECORDING_S * 25) + 2


class FakeInputStream:
    """Stands in for sounddevice.InputStream: delivers blocks of a tone when started."""

    def __init__(self, samplerate: int, channels: int, dtype: str, callback):
        self.callback, self.samplerate, self.started, self.closed = callback, samplerate, 0, False
        assert (channels, dtype) == (1, "float32")

    def start(self) -> None:
        self.started += 1
        block = np.full((1600, 1), 0.25, dtype=np.float32)
        for _ in range(5):  # half a second at 16 kHz, as sounddevice's thread would
            self.callback(block, len(block), None, None)
            block[:] = 0.0  # sounddevice reuses its buffer

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_push_to_talk_records_between_press_and_release():
    streams: list[FakeInputStream] = []
    recorder = PushToTalk(
        open_stream=lambda **kw: streams.append(FakeInputStream(**kw)) or streams[-1]
    )
    recorder.start()
    recorder.start()  # a second press while held changes nothing
    assert recorder.recording and len(streams) == 1
    clip = recorder.stop()
    assert not recorder.recording and streams[0].closed
    assert clip.sample_rate == 16_000 and clip.samples.shape == (8000,)
    assert clip.samples[0] == 0.25  # the first block was copied before the buffer was reused


def test_push_to_talk_without_a_microphone_says_so():
    with pytest.raises(MicrophoneUnavailable) as error:
        PushToTalk().start()  # the real sounddevice: no PortAudio or no device on this machine
    assert str(error.value) in (NO_PORTAUDIO, NO_MICROPHONE)
    with pytest.raises(MicrophoneUnavailable, match="Nothing was recorded"):
        PushToTalk().stop()


def test_push_to_talk_release_after_a_failed_start_adds_no_second_message(recognizer):
    voice = Voice(recognizer)
    voice.start_local()  # warns once: no PortAudio or no microphone on this machine
    assert not voice.push_to_talk.recording
    assert voice.stop_local({"text": "kept", "files": []}, TRANSCRIBE) == gr.skip()


def test_push_to_talk_speech_lands_in_the_box(recognizer, spoken_question: Path):
    speech = to_model_rate(AudioClip(*soundfile.read(spoken_question, dtype="float32")))

    class SpeakingStream(FakeInputStream):
        def start(self) -> None:
            for block in np.array_split(speech, 20):
                self.callback(block[:, None], len(block), None, None)

    voice = Voice(recognizer, PushToTalk(open_stream=SpeakingStream))
    voice.start_local()
    box = voice.stop_local({"text": "", "files": []}, TRANSCRIBE)
    assert word_error_rate(QUESTION, box["text"]) < MAX_WER, box["text"]
