"""Videos and screen recordings: frames about one a second with their times, the soundtrack as
audio with a caption of what was said, limits checked before decoding, one sentence for a video
that cannot be used; kept with the conversation and exported; through the intake, the engine's
processor, gradio_client and /v1, and sent to a model server as video_url plus input_audio.

The videos are made for real: MP4s written with PyAV (H.264 pictures that count their frames in
their red channel, AAC speech from espeak-ng), and a WebM recorded by Chromium's own
MediaRecorder from its fake camera and microphone, which gives no duration or frame count.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from app.config import Limits
from app.history import Conversation, History, StoredMessage, export_markdown
from app.intake.files import file_kind
from app.intake.message import Intake
from app.intake.probe import MediaError
from app.intake.speech import Speech
from app.intake.video import MAX_FRAMES, frame_times, load_video
from app.page.display import shown_conversation
from app.tasks.describe import is_description
from app.tasks.settings import Settings
from bench.samples import FPS, RED_STEP, speak, write_video
from model import GenerationOptions, Message, SpeechRecognizer, VideoClip
from model.openai_wire.requests import message_to_wire
from model.prompts import build_inputs
from tests import test_desktop
from tests.conftest import MAX_WER, QUESTION, launch_chromium, word_error_rate
from tests.decoding import load_attachments
from tests.test_fuzz import FUZZ, mutated

x_display = test_desktop.x_display  # an X server (Xvfb) for Record screen

LIMITS = Limits()
SPOKEN = "Open the settings menu, then press the blue button to save the file."
RECORD_MS = 5000


def write_long_sound(
    path: Path, sound_s: float, container: str | None = None, understated: int = 1
) -> Path:
    """Five small frames, one a second, and `sound_s` of silence: one encoded packet of it
    written again and again, so hours of sound take well under a second. The WebM is written
    as browsers record it, declaring no duration. `understated`: the packets' times (and so
    the header) say the sound is that many times shorter than it is, as a crafted file can."""
    webm = container == "webm"
    with av.open(str(path), "w", format=container, options={"live": "1"} if webm else {}) as out:
        pictures = out.add_stream("libvpx" if webm else "libx264", rate=1)
        pictures.width, pictures.height, pictures.pix_fmt = 64, 36, "yuv420p"
        rate, size = (48_000, 960) if webm else (8_000, 1024)  # samples a packet: 20 ms Opus, AAC
        sound = out.add_stream("libopus" if webm else "aac", rate=rate)
        sound.layout = "mono"
        encoded = []
        for index in range(4):  # past the encoder's priming
            silence = av.AudioFrame.from_ndarray(
                np.zeros((1, size), np.float32), format="flt", layout="mono"
            )
            silence.sample_rate, silence.pts = rate, index * size
            encoded += sound.encode(silence)
        for second in range(5):
            picture = av.VideoFrame.from_image(Image.new("RGB", (64, 36), (40 * second, 0, 0)))
            for packet in pictures.encode(picture):
                out.mux(packet)
        for packet in pictures.encode():
            out.mux(packet)
        body = bytes(encoded[-1])
        for index in range(int(sound_s * rate / size)):
            packet = av.Packet(body)
            packet.stream, packet.time_base = sound, Fraction(1, rate)
            packet.pts = packet.dts = index * size // understated
            packet.duration = size // understated
            out.mux(packet)
    return path


def frame_number(image: Image.Image) -> int:
    """Which frame of a written video a picture is, from its red channel (away from the text)."""
    red = float(np.asarray(image)[-20:, -40:, 0].mean())
    return round(red / RED_STEP)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    speech = speak(SPOKEN, folder / "speech.wav", gap_s=0.5)
    made = {
        "talk": write_video(folder / "talk.mp4", 8, speech=speech),
        "silent": write_video(folder / "silent.mp4", 5),
        "long": write_video(folder / "long.mp4", 130, fps=1, size=(64, 36)),
        "short": write_video(folder / "short.mp4", 0.3),
    }
    data = made["talk"].read_bytes()
    made["cut"] = folder / "cut.mp4"
    made["cut"].write_bytes(data[: len(data) // 3])
    # Cut where FFmpeg reads on without a word: an MP4 whose index comes first, and a WebM.
    for name, container, faststart in [
        ("cut-faststart.mp4", None, True),
        ("cut.webm", "webm", False),
    ]:
        whole = write_video(
            folder / f"whole-{name}", 8, speech=speech, container=container, faststart=faststart
        ).read_bytes()
        made[name] = folder / name
        made[name].write_bytes(whole[: len(whole) * 3 // 5])
    made["fake"] = folder / "fake.mp4"
    made["fake"].write_bytes(data[:32] + b"\x00" * 4000)
    # Sound only, in an MP4: a recording, as before.
    made["sound_only"] = folder / "voice-note.m4a"
    with av.open(str(made["sound_only"]), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16_000)
        stream.layout = "mono"
        samples = np.zeros(16_000, np.float32)
        frame = av.AudioFrame.from_ndarray(samples[None], format="flt", layout="mono")
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return made


@pytest.fixture(scope="module")
def chromium_webm(tmp_path_factory: pytest.TempPathFactory, playwright) -> Path:
    """A WebM that Chromium's MediaRecorder records from its fake camera and, on its fake
    microphone (a Chromium of its own, so it plays from the start), the spoken question."""
    folder = tmp_path_factory.mktemp("recorded")
    question = speak(QUESTION, folder / "question.wav")
    browser = launch_chromium(playwright, heard=question)
    try:
        page = browser.new_context(permissions=["microphone", "camera"]).new_page()
        # An https page is a secure context, where getUserMedia exists; nothing is fetched.
        page.route("https://recorder.test/", lambda route: route.fulfill(body="<p>rec</p>"))
        page.goto("https://recorder.test/")
        recorded = page.evaluate(
            """async (ms) => {
                const stream = await navigator.mediaDevices.getUserMedia(
                    {video: {width: 320, height: 240}, audio: true});
                const recorder = new MediaRecorder(stream);
                const chunks = [];
                recorder.ondataavailable = (event) => chunks.push(event.data);
                const stopped = new Promise((done) => { recorder.onstop = done; });
                recorder.start();
                await new Promise((done) => setTimeout(done, ms));
                recorder.stop();
                await stopped;
                const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
                let text = "";
                for (let i = 0; i < bytes.length; i += 0x8000) {
                    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
                }
                return [recorder.mimeType, btoa(text)];
            }""",
            RECORD_MS,
        )
    finally:
        browser.close()
    mime, data = recorded
    assert mime.startswith("video/webm")
    path = folder / "recording.webm"
    path.write_bytes(base64.b64decode(data))
    return path


def intake() -> Intake:
    return Intake(LIMITS, Speech(SpeechRecognizer()), is_description)


def stored(text: str, *paths: Path) -> StoredMessage:
    taker = intake()
    files = taker.message_files({"text": text, "files": [str(path) for path in paths]})
    return taker.stored_user_message(text, files)


def model_message(message: StoredMessage) -> Message:
    [sent] = intake().model_messages(Conversation("", "", 0, 0, (message,)), "")
    return sent


def prompt_text(processor, message: Message, options: GenerationOptions | None = None) -> str:
    inputs = build_inputs(processor, [message], options or GenerationOptions())
    return processor.tokenizer.decode(inputs["input_ids"][0])


def count(processor, inputs, token: str) -> int:
    return int((inputs["input_ids"] == processor.tokenizer.convert_tokens_to_ids(token)).sum())


# -- choosing frames --------------------------------------------------------------------------


@given(
    frames=st.integers(1, 4000),
    fps=st.sampled_from([0.5, 1, 5, 24, 29.97, 30, 60]),
    start=st.floats(0, 10),
)
def test_frames_are_about_one_a_second_at_most_32_first_and_last_kept(frames, fps, start):
    times = [start + index / fps for index in range(frames)]
    chosen = frame_times(times)
    assert chosen[0] == 0 and chosen[-1] == frames - 1
    assert chosen == sorted(set(chosen)) and len(chosen) <= MAX_FRAMES
    span = times[-1] - times[0]
    assert len(chosen) >= min(MAX_FRAMES, frames, int(span) + 1)
    if span >= 1:  # about one a second: evenly spread, a second or a little more apart
        gaps = np.diff([times[index] for index in chosen])
        even = span / min(MAX_FRAMES - 1, int(span))
        assert even - 1.01 / fps <= gaps.min() and gaps.max() <= even + 1.01 / fps


# -- intake -----------------------------------------------------------------------------------


def test_an_mp4_with_pictures_is_a_video_and_one_with_only_sound_stays_audio(videos, tmp_path):
    renamed = tmp_path / "screen.wav"  # the name says audio; the content says video
    shutil.copyfile(videos["talk"], renamed)
    assert file_kind(renamed, LIMITS) == "video"
    assert file_kind(videos["silent"], LIMITS) == "video"
    assert file_kind(videos["sound_only"], LIMITS) == "audio"


@pytest.mark.parametrize(
    "name, container, mime",
    [("clip.mov", "mov", "video/quicktime"), ("clip.mkv", "matroska", "video/x-matroska")],
)
def test_mov_and_mkv_are_videos_too(tmp_path: Path, name: str, container: str, mime: str):
    speech = speak("Hello there.", tmp_path / "hello.wav")
    path = write_video(tmp_path / name, 3, speech=speech, container=container)
    assert file_kind(path, LIMITS) == "video"
    video = load_video(path, LIMITS)
    assert len(video.clip.frames) == 3 and video.clip.mime == mime
    assert video.soundtrack is not None


def test_a_phone_video_held_upright_comes_out_upright(videos, tmp_path: Path):
    # A phone writes landscape pictures and, in the track header, a matrix that turns them a
    # quarter clockwise; this is that matrix, written into the test video's header.
    data = bytearray(videos["silent"].read_bytes())
    header = data.find(b"tkhd")
    assert data[header + 4] == 0  # version 0: the matrix comes 40 bytes after the box type
    struct.pack_into(">9i", data, header + 44, 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path = tmp_path / "portrait.mp4"
    path.write_bytes(data)
    first = load_video(path, LIMITS).clip.frames[0]
    assert first.size == (180, 320)
    text = np.asarray(first.convert("L"))[:60, -30:] > 200  # "frame 0", now down the right
    assert text.any()


def test_frames_with_their_times_and_the_soundtrack_reach_the_processor(videos, processor):
    video = load_video(videos["talk"], LIMITS)
    clip = video.clip
    assert len(clip.frames) == 8  # 7.75 s: one a second, the first and the last
    assert clip.timestamps_s[0] == 0 and clip.timestamps_s[-1] == pytest.approx(7.75)
    for image, at in zip(clip.frames, clip.timestamps_s, strict=True):
        assert frame_number(image) == round(at * FPS)  # the frame of that time, decoded
    assert clip.frames[0].size == (320, 180) and clip.mime == "video/mp4"
    assert video.soundtrack.sample_rate == 16_000 and 4 < video.soundtrack.duration_s < 8

    message = model_message(stored("What happens here?", videos["talk"]))
    assert message.video == (clip,) and len(message.audio) == 1
    inputs = build_inputs(processor, [message], GenerationOptions())
    assert tuple(inputs["pixel_values_videos"].shape) == (8, 70, 6912)
    assert count(processor, inputs, "<|video|>") == 8 * 66  # 16:9 at 70: 66 tokens a frame
    assert count(processor, inputs, "<|audio|>") == pytest.approx(
        25 * video.soundtrack.duration_s, abs=2
    )  # 25 audio tokens a second
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    stamps = re.findall(r"(\d\d:\d\d) <\|image>", text)
    assert stamps == [f"00:{second:02d}" for second in range(8)]
    # The frames' budget is their own: 140 changes the frames, not an image's 280.
    richer = build_inputs(processor, [message], GenerationOptions(video_frame_tokens=140))
    assert richer["pixel_values_videos"].shape[1] == 140


def test_the_caption_holds_what_was_said_and_a_silent_video_has_none(videos):
    [talk] = stored("What does she say?", videos["talk"]).attachments
    assert talk.kind == "video" and talk.caption.startswith("🎤 Heard: “")
    assert word_error_rate(SPOKEN, talk.caption.split("“", 1)[1]) <= 0.34
    message = stored("What happens?", videos["silent"])
    [silent] = message.attachments
    assert silent.caption == ""
    sent = model_message(message)
    assert len(sent.video) == 1 and sent.audio == ()


def test_a_browser_recorded_webm_without_a_frame_count_works(chromium_webm, processor):
    with av.open(str(chromium_webm)) as container:
        stream = container.streams.video[0]
        assert not stream.frames  # what MediaRecorder writes: no count (pitfall 4)
    assert file_kind(chromium_webm, LIMITS) == "video"
    message = stored("What do you see and hear?", chromium_webm)
    [attachment] = message.attachments
    heard = attachment.caption.removeprefix("🎤 Heard: “").removesuffix("”")
    # The fake microphone's question; Chromium's Opus at 32 kb/s and a start clipped by the
    # recorder's own start cost a few words more than the WAV does (measured: 1 to 5 of 15).
    assert word_error_rate(QUESTION, heard) <= 2 * MAX_WER and "describe" in heard.lower()
    sent = model_message(message)
    [clip] = sent.video
    assert clip.mime == "video/webm" and 4 <= len(clip.frames) <= 6
    assert 4 < clip.duration_s < 6 and clip.timestamps_s[-1] == clip.duration_s
    inputs = build_inputs(processor, [sent], GenerationOptions())
    assert inputs["pixel_values_videos"].shape[0] == len(clip.frames)
    assert count(processor, inputs, "<|audio|>") > 50
    with pytest.raises(MediaError, match=r"^recording\.webm (lasts 5 s|is longer than 2 s)"):
        file_kind(chromium_webm, Limits(max_video_s=2))


@pytest.mark.parametrize(
    "name, sentence",
    [
        ("long", r"^long\.mp4 lasts 2\.2 min; Loupe takes videos up to 2 min\.$"),
        ("cut", r"^cut\.mp4 is cut short: the file is incomplete\.$"),
        ("cut-faststart.mp4", r"^cut-faststart\.mp4 is cut short: the video file is incomplete\.$"),
        ("cut.webm", r"^cut\.webm is cut short: the video file is incomplete\.$"),
        ("fake", r"^fake\.mp4 is damaged: not a video or audio file Loupe can read\.$"),
    ],
)
def test_long_and_broken_videos_are_refused_in_one_sentence(videos, name, sentence):
    with pytest.raises(MediaError, match=sentence):
        stored("What is this?", videos[name])


@pytest.mark.parametrize(
    "container, sound_s, sentence",
    [  # an MP4 declares its sound's length; a browser's WebM only has its packets' times
        (None, 7200, r"^long-sound\.mp4's sound lasts 2 h; Loupe takes videos up to 2 min\.$"),
        (
            "webm",
            200,
            r"^long-sound\.webm's sound lasts over 2 min; Loupe takes videos up to 2 min\.$",
        ),
    ],
)
def test_a_soundtrack_longer_than_the_video_limit_is_refused_before_decoding(
    tmp_path: Path, container: str | None, sound_s: float, sentence: str
):
    suffix = "webm" if container else "mp4"
    path = write_long_sound(tmp_path / f"long-sound.{suffix}", sound_s, container)
    with pytest.raises(MediaError, match=sentence):
        stored("What is said?", path)  # refused before it is kept
    with pytest.raises(MediaError, match=sentence):
        load_video(path, LIMITS)


def test_a_soundtrack_longer_than_its_header_says_is_decoded_no_further_than_the_limit(
    tmp_path: Path,
):
    path = write_long_sound(tmp_path / "talk.mp4", 7200, understated=128)  # "56 s"
    assert file_kind(path, LIMITS) == "video"
    sentence = r"^talk\.mp4's sound lasts over 2 min; Loupe takes videos up to 2 min\.$"
    with pytest.raises(MediaError, match=sentence):
        load_video(path, LIMITS)


def test_a_soundtrack_is_held_to_the_recording_limit_too(tmp_path: Path):
    path = write_long_sound(tmp_path / "talk.mp4", 90)
    assert file_kind(path, LIMITS) == "video"
    sentence = r"^talk\.mp4's sound lasts 90 s; Loupe takes recordings up to 60 s\.$"
    with pytest.raises(MediaError, match=sentence):
        file_kind(path, Limits(max_audio_s=60))


def test_video_frames_are_held_to_the_megapixel_limit_from_the_header(tmp_path: Path):
    path = write_video(tmp_path / "wide.mp4", 1, fps=1, size=(2000, 600))
    assert file_kind(path, LIMITS) == "video"
    sentence = (
        r"^wide\.mp4 has frames of 1\.2 megapixels; Loupe takes video frames up to 1 megapixels\.$"
    )
    with pytest.raises(MediaError, match=sentence):
        file_kind(path, Limits(max_image_mp=1))
    with pytest.raises(MediaError, match=sentence):
        load_video(path, Limits(max_image_mp=1))


# Refuses a 4096x4096 video, counting how much the process grew (MB) on the way.
REFUSE_IN_CHILD = """
import json, resource, sys
import av
from app.config import Limits
from app.intake.files import file_kind
from app.intake.probe import MediaError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    file_kind(sys.argv[1], Limits(max_image_mp=4))
    sentence = ""
except MediaError as exc:
    sentence = str(exc)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps([sentence, grown]))
"""


def test_a_video_over_the_megapixel_limit_is_refused_without_decoding_a_frame(tmp_path: Path):
    # Opening a file probes its streams, which decodes a frame unless FFmpeg is told the limit.
    path = tmp_path / "huge.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=1, options={"preset": "ultrafast"})
        stream.width = stream.height = 4096
        stream.pix_fmt = "yuv420p"
        for packet in [*stream.encode(av.VideoFrame(4096, 4096, "yuv420p")), *stream.encode()]:
            out.mux(packet)
    child = subprocess.run(
        [sys.executable, "-c", REFUSE_IN_CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )
    sentence, grown_mb = json.loads(child.stdout)
    assert sentence == (
        "huge.mp4 has frames of 16.8 megapixels; Loupe takes video frames up to 4 megapixels."
    )
    assert grown_mb < 40  # a decoded frame and the decoder's buffers: some 80 MB


@pytest.mark.parametrize("damage", ["gone", "over a limit now"])
def test_an_earlier_message_whose_video_cannot_be_read_again_does_not_fail_later_turns(
    videos, tmp_path: Path, damage: str
):
    first = stored("What happens?", shutil.copy(videos["talk"], tmp_path / "talk.mp4"))
    # Kept as a conversation keeps its files: under a name of its own.
    path = Path(first.attachments[0].path).rename(tmp_path / "5b3d8dd50480.mp4")
    first = replace(first, attachments=(replace(first.attachments[0], path=str(path)),))
    if damage == "gone":
        path.unlink()
        sentence = "talk.mp4 could not be read: it is no longer there."
    else:  # as a message kept before its sound's length was checked
        write_long_sound(path, 7200)
        sentence = "talk.mp4's sound lasts 2 h; Loupe takes videos up to 2 min."
    later = StoredMessage("user", "And then?")
    turns = (first, StoredMessage("assistant", "Someone talks."), later)
    sent = intake().model_messages(Conversation("", "", 0, 0, turns), "")
    assert sent[0].video == () and sent[0].audio == ()
    assert sent[0].text == f"What happens?\n\n(This message's files are left out: {sentence})"
    assert [message.text for message in sent[1:]] == ["Someone talks.", "And then?"]
    # The message being answered gets the sentence: that turn, not every later one.
    with pytest.raises(MediaError, match=f"^{re.escape(sentence)}$"):
        intake().model_messages(Conversation("", "", 0, 0, (first,)), "")


def test_a_video_of_one_frame_is_one_frame_at_00_00(videos, processor):
    clip = load_video(videos["short"], LIMITS).clip
    assert clip.timestamps_s == (0.0,) and clip.duration_s == 0
    message = Message("user", "What is it?", video=(clip,))
    assert "00:00 <|image>" in prompt_text(processor, message)


def test_the_video_is_kept_shown_with_its_poster_and_length_and_exported(videos, tmp_path):
    history = History(tmp_path / "data")
    conversation_id = history.create()
    history.append(conversation_id, stored("What happens?", videos["talk"]))
    conversation = history.get(conversation_id)
    shown, _ = shown_conversation(conversation)
    poster = shown[0]["content"]
    assert poster["path"].endswith(".poster.jpg") and Path(poster["path"]).is_file()
    assert poster["alt_text"] == "First frame of the video you sent: talk.mp4"
    assert shown[1]["content"] == "🎬 Video, 0:08"
    assert shown[2]["content"].startswith("🎤 Heard: “")
    with Image.open(poster["path"]) as first:
        assert frame_number(first.convert("RGB")) == 0
    exported = export_markdown(conversation)
    assert "[🎬 talk.mp4](file://" in exported and "> 🎤 Heard: “" in exported
    # Reopened, it is decoded again into the same frames and sound.
    again = model_message(conversation.messages[0])
    assert len(again.video[0].frames) == 8 and len(again.audio) == 1


def test_describe_mode_on_a_video_asks_what_happens_and_what_is_said(videos):
    from app.tasks.describe import level_prompt

    message = stored(level_prompt("detailed"), videos["talk"])
    sent = model_message(message)
    assert sent.text.endswith("Describe what happens, in order, with the times, and what is said.")
    shown, _ = shown_conversation(Conversation("", "", 0, 0, (message,)))
    assert shown[-1]["content"] == "Describe this video: Detailed"


def test_describe_mode_on_the_page_describes_a_video(engine, videos, tmp_path: Path):
    from app.tasks.describe import AI_NOTICE
    from tests.test_pdf import chat_handlers

    handlers = chat_handlers(engine, tmp_path / "data")
    value = {"text": "", "files": [str(videos["talk"])]}
    settings = ("", 1.0, 0.95, 64, 8, False, 0)
    updates = list(handlers.describe_page(value, "", "detailed", *settings))
    shown, _, conversation_id, *_ = updates[0]
    assert shown[1]["content"] == "🎬 Video, 0:08"
    assert shown[2]["content"].startswith("🎤 Heard: “")
    assert shown[3]["content"] == "Describe this video: Detailed"
    conversation = handlers.history.get(conversation_id)
    assert conversation.title == "Detailed: talk.mp4"
    assert conversation.messages[-1].text.startswith(AI_NOTICE)
    [sent] = handlers.intake.model_messages(conversation, "")[:1]
    assert len(sent.video) == 1 and len(sent.audio) == 1
    assert sent.text.endswith("with the times, and what is said.")


def test_load_attachments_gives_a_videos_frames_and_sound(videos):
    images, audio = load_attachments([str(videos["talk"])], LIMITS)
    assert len(images) == 8 and len(audio) == 1


def test_video_detail_is_a_setting_of_its_own():
    options = Settings("", 1.0, 0.95, 64, 16, False, 0).options()
    assert options.video_frame_tokens == 70  # Gemma's own video budget, by default
    options = Settings("", 1.0, 0.95, 64, 16, False, 560, 140).options()
    assert (options.image_tokens, options.video_frame_tokens) == (560, 140)
    with pytest.raises(ValueError, match="video_frame_tokens must be one of"):
        GenerationOptions(video_frame_tokens=1120)


# -- engines and the API ----------------------------------------------------------------------


def test_a_model_server_gets_the_video_file_and_its_sound(videos):
    message = model_message(stored("What happens?", videos["talk"]))
    wire = message_to_wire(message)
    kinds = [part["type"] for part in wire["content"]]
    assert kinds == ["video_url", "input_audio", "text"]
    url = wire["content"][0]["video_url"]["url"]
    assert url.startswith("data:video/mp4;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == videos["talk"].read_bytes()


def test_the_engine_answers_a_video_with_sound(engine, videos):
    from model import ChatRequest, Finished, TextChunk

    message = model_message(stored("What happens?", videos["talk"]))
    # Eight tokens at least: a random model may end its reply at once.
    options = GenerationOptions(max_new_tokens=8, min_new_tokens=8)
    events = list(engine.submit(ChatRequest((message,), options)))
    assert isinstance(events[-1], Finished), events[-1]
    assert any(isinstance(event, TextChunk) for event in events)
    assert events[-1].timing.prompt_tokens > 8 * 60 + 100


def _video_part(path: Path, mime: str = "video/mp4") -> dict:
    data = base64.b64encode(path.read_bytes()).decode()
    return {"type": "video_url", "video_url": {"url": f"data:{mime};base64,{data}"}}


def test_v1_bodies_with_a_video_url_become_frames_and_sound(videos):
    from app.v1.serving import ApiError, chat_call

    body = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "What happens?"}, _video_part(videos["talk"])],
            }
        ]
    }
    [sent] = chat_call(body, LIMITS).request.messages
    [clip] = sent.video
    assert len(clip.frames) == 8 and len(sent.audio) == 1
    assert clip.data == videos["talk"].read_bytes()  # for a model server, after the file is gone
    body["messages"][0]["content"][1] = _video_part(videos["long"])
    with pytest.raises(ApiError, match=r"content\[1\] lasts 2\.2 min; Loupe takes videos up to"):
        chat_call(body, LIMITS)
    body["messages"][0]["content"][1] = {
        "type": "video_url",
        "video_url": {"url": "https://example.com/a.mp4"},
    }
    with pytest.raises(ApiError, match="Loupe takes videos only as base64 data URLs"):
        chat_call(body, LIMITS)


def test_the_chat_api_takes_a_video(demo_app, videos, tmp_path: Path):
    from gradio_client import Client, handle_file

    url, _ = demo_app
    client = Client(url, verbose=False)
    message = {"text": "What happens?", "files": [handle_file(videos["talk"])]}
    answer = client.predict(message, max_new_tokens=16, api_name="/chat")
    assert isinstance(answer, str)  # taken, not refused; random weights may answer nothing
    long_sound = write_long_sound(tmp_path / "long-sound.mp4", 7200)
    for path, sentence in [
        (videos["long"], r"long\.mp4 lasts 2\.2 min; Loupe takes videos up to"),
        (long_sound, r"long-sound\.mp4's sound lasts 2 h; Loupe takes videos up to 2 min\."),
    ]:
        with pytest.raises(Exception, match=sentence):
            message = {"text": "And this?", "files": [handle_file(path)]}
            client.predict(message, max_new_tokens=16, api_name="/chat")


def test_a_conversation_goes_on_when_a_kept_video_is_gone(demo_app, videos, home, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = demo_app
    client = Client(url, verbose=False)
    conversation = client.predict(api_name="/new_conversation")
    path = shutil.copy(videos["silent"], tmp_path / "gone-soon.mp4")
    message = {"text": "What happens?", "files": [handle_file(path)]}
    client.predict(message, max_new_tokens=16, conversation_id=conversation, api_name="/chat")
    [kept] = [p for p in (home / ".loupe").rglob("*.mp4") if p.parent.name == conversation]
    kept.unlink()
    for text in ["And then?", "And after that?"]:  # every later turn answers
        message = {"text": text, "files": []}
        answer = client.predict(
            message, max_new_tokens=16, conversation_id=conversation, api_name="/chat"
        )
        assert isinstance(answer, str)  # answered, not refused (random weights may say nothing)


def test_v1_takes_a_video_url(demo_app, videos, chromium_webm, tmp_path: Path):
    import openai

    url, _ = demo_app
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
    for path, mime in [(videos["talk"], "video/mp4"), (chromium_webm, "video/webm")]:
        completion = client.chat.completions.create(
            model="",
            messages=[{"role": "user", "content": [_video_part(path, mime)]}],
            max_tokens=4,
        )
        assert completion.usage.prompt_tokens > 4 * 60
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="",
            messages=[{"role": "user", "content": [_video_part(videos["cut"])]}],
            max_tokens=4,
        )
    assert "content[0] is" in json.dumps(refused.value.body)
    long_sound = write_long_sound(tmp_path / "long-sound.mp4", 7200)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="",
            messages=[{"role": "user", "content": [_video_part(long_sound)]}],
            max_tokens=4,
        )
    assert "'s sound lasts 2 h; Loupe takes videos up to 2 min." in refused.value.message


# -- fuzzing ----------------------------------------------------------------------------------


def _video_seeds(folder: Path) -> list[bytes]:
    seeds = []
    for name, container in [("seed.mp4", None), ("seed.webm", "webm")]:
        path = write_video(folder / name, 1.2, fps=5, size=(32, 18), container=container)
        seeds.append(path.read_bytes())
    return seeds


VIDEO_SEEDS = _video_seeds(Path(__import__("tempfile").mkdtemp(prefix="video-seeds-")))


@FUZZ
@given(data=mutated(VIDEO_SEEDS))
def test_video_bytes_give_frames_and_sound_or_one_sentence(tmp_path: Path, data: bytes):
    path = tmp_path / "upload.mp4"
    path.write_bytes(data)
    try:
        kind = file_kind(path, LIMITS)
        images, audio = load_attachments([str(path)], LIMITS)
    except MediaError as exc:
        message = str(exc)
        assert message.startswith(path.name) and message.endswith(".") and "\n" not in message
        return
    if kind == "video":
        video = load_video(path, LIMITS)
        assert 1 <= len(video.clip.frames) <= MAX_FRAMES
        assert list(video.clip.timestamps_s) == sorted(video.clip.timestamps_s)
        assert all(image.mode == "RGB" for image in images)
        assert isinstance(video.clip, VideoClip)


# -- the page ---------------------------------------------------------------------------------


def test_the_page_sends_a_video_and_shows_its_poster_length_and_speech(page, demo_app, videos):
    from playwright.sync_api import expect

    from tests.test_page import send_with

    send_with(page, demo_app[0], videos["talk"], "What happens in this recording?")
    chat = page.locator("#chat")
    expect(chat.locator("img[src$='.poster.jpg']")).to_be_visible()  # its first frame
    expect(chat.get_by_text("🎬 Video, 0:08", exact=True)).to_be_visible()
    expect(chat.get_by_text("🎤 Heard: “", exact=False)).to_be_visible()


# -- desktop mode's Record screen -------------------------------------------------------------


def test_record_screen_attaches_a_video_of_the_screen(x_display: str):
    import time

    import gradio as gr

    from app.page.desktop import RECORD_SCREEN, STOP_RECORDING, ScreenRecorder

    recorder = ScreenRecorder()
    value = {"text": "What did I do?", "files": ["earlier.png"]}
    unchanged, button = recorder.toggle(value)
    assert unchanged == gr.skip() and button["value"] == STOP_RECORDING and recorder.recording
    time.sleep(3.2)
    box, button = recorder.toggle(value)
    assert button["value"] == RECORD_SCREEN and not recorder.recording
    assert box["text"] == "What did I do?" and box["files"][0] == "earlier.png"
    recording = Path(box["files"][1])
    assert file_kind(recording, LIMITS) == "video"
    video = load_video(recording, LIMITS)
    assert video.soundtrack is None and 2.5 < video.duration_s < 4.5
    assert len(video.clip.frames) >= 3 and video.clip.frames[0].size == test_desktop.SCREEN


def test_record_screen_stops_by_itself_at_its_limit(x_display: str):
    import time

    from app.page.desktop import ScreenRecorder

    recorder = ScreenRecorder(max_s=1.0)
    recorder.start()
    time.sleep(2.5)
    box = recorder.stop({"text": "", "files": []})
    assert load_video(box["files"][0], LIMITS).duration_s <= 1.0


def test_record_screen_without_a_display_says_so(monkeypatch: pytest.MonkeyPatch):
    import gradio as gr

    from app.page.desktop import ScreenRecorder

    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(gr.Error, match="The screen could not be recorded"):
        ScreenRecorder().start()


def test_a_model_server_that_cannot_read_video_says_so_in_one_sentence(model_server, videos):
    """`transformers serve` reads video_url only with torchcodec, which is not installed here:
    its failure comes back as one sentence that names the video (a server with torchcodec
    answers)."""
    from bench.serving import wait_until_ready
    from model import ChatRequest, EngineError, Finished, RemoteEngine, RemoteEngineConfig

    config = RemoteEngineConfig(model_server.url, model=model_server.model)
    engine = RemoteEngine(config, queue_size=2)
    engine.start()
    try:
        wait_until_ready(engine, 30)
        message = model_message(stored("What happens?", videos["talk"]))
        events = list(engine.submit(ChatRequest((message,), GenerationOptions(max_new_tokens=8))))
    finally:
        engine.close()
    last = events[-1]
    assert isinstance(last, Finished | EngineError)
    if isinstance(last, EngineError):
        assert last.message.startswith("The model server did not take this video (vLLM reads")
        assert "\n" not in last.message and last.message.endswith(".")
