"""The model's input for a late turn of a conversation with photos in it: how long the page's
intake takes to build the 10th turn's messages when 8 photos (12-megapixel JPEGs, as phones
take them) were sent over the turns before it. No model is loaded: this is Loupe's own work
before a request reaches the engine.

    .venv/bin/python -m bench.intake_speed --label before  # results/cpu-intake-turn10-before.*
    .venv/bin/python -m bench.intake_speed --label after   # the same, on the changed code

The photos are made once for the run (`bench.samples.camera_photo`: gradient, shapes and
grain, as JPEG at quality 88). Each run goes through a new conversation as the page does, with
one Intake: each turn's message kept (the photo checked by `Intake.stored_user_message`, copied
by `app.history.History` into the run's data folder), the turn's request built (`sent_turns`,
then `model_messages`), an answer kept. One photo in each of turns 1 to 8, text alone in turns 9
and 10, so whatever an Intake keeps from turn to turn is there at the 10th. The 10th turn's
`model_messages` is the headline figure; its `sent_turns` is timed too. One more figure times
the 10th turn built by a new Intake, on a conversation kept by another that built no turn (a
conversation opened again after Loupe restarts). Each figure is the median of `--runs` runs,
each over a conversation of its own, after one warm-up run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Limits
from app.history import Conversation, History, StoredMessage
from app.intake.image import load_image
from app.intake.message import Intake
from app.intake.speech import Speech
from app.tasks.describe import is_description
from model import SpeechRecognizer

from .harness import Figure, cpu_flags, device_label, figure, machine, repeat, seconds, write
from .samples import camera_photo

PHOTOS = 8
TURN = 10  # the turn timed; photos go one a turn from the first
PHOTO_PX = (4000, 3000)  # 12 megapixels, 4:3, as a phone's main camera
JPEG_QUALITY = 88
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."
QUESTION = "What is in this photo, and is anything in it out of place?"
FOLLOW_UP = "Which of the photos so far was taken closest to the water?"
ANSWER = (
    "The photo shows a wide view under a pale sky, with a few rounded shapes in the foreground "
    "and the grain of a phone camera in low light. Nothing in it looks out of place."
)
ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.intake_speed", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--label", default="", help="added to the file name: before, after")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure after a warm-up")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="loupe-bench-intake-"))
    try:
        figures, details = measure(work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "subject": f"Building the model's input for turn {TURN} of a conversation holding "
        f"{PHOTOS} photos of {PHOTO_PX[0]}x{PHOTO_PX[1]}",
        "machine": {**machine(), "cpu_flags": cpu_flags()},
        "settings": {
            "runs": args.runs,
            "intake": f"{Intake.__module__}.{Intake.__qualname__}",
            "code": _commit(),
        },
        "details": details,
        "notes": [
            f"turn {TURN}: Intake.model_messages over the {2 * TURN - 1} messages (the "
            f"{PHOTOS} photos decoded as the intake decodes them), median "
            f"{figures[0].median:.3f} s of {figures[0].runs} runs (min {figures[0].min:.3f}, "
            f"max {figures[0].max:.3f}); {figures[1].median:.3f} s of this process's CPU",
        ],
    }
    name = f"{device_label()}-intake-turn{TURN}{'-' + args.label if args.label else ''}"
    paths = write(args.out, name, results, figures, plotted=False)
    print("\n".join(str(path) for path in paths))
    return paths


def measure(work: Path, runs: int) -> tuple[list[Figure], dict[str, Any]]:
    """The figures, over conversations kept in `work`; details of what was made."""
    limits = Limits()
    speech = Speech(SpeechRecognizer())  # never loaded: photos need no speech
    started = time.perf_counter()
    photos = make_photos(work / "sent", PHOTOS)
    made_s = time.perf_counter() - started
    history = History(work / "data")

    def one_run() -> tuple[float, float, float]:
        """A new conversation, turn by turn as the page goes (one Intake keeps each message and
        builds each turn's request): the 10th turn's model_messages (wall clock and this
        process's CPU) and sent_turns."""
        intake = Intake(limits, speech, is_description)
        conversation_id = history.create()
        for turn in range(1, TURN + 1):
            _keep_turn(history, conversation_id, intake, photos, turn)
            conversation = history.get(conversation_id)
            started = time.perf_counter()
            kept, left_out = intake.sent_turns(conversation, SYSTEM_PROMPT)
            counted_s = time.perf_counter() - started
            started, cpu = time.perf_counter(), time.process_time()
            messages = intake.model_messages(kept, SYSTEM_PROMPT)
            built_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
            if turn < TURN:
                history.append(conversation_id, StoredMessage("assistant", ANSWER))
        _check(conversation, left_out, messages)
        return built_s, cpu_s, counted_s

    def fresh_run() -> float:
        """The 10th turn built by an Intake that kept and built none of the conversation's
        turns (as when a conversation is opened again after Loupe restarts)."""
        keeper = Intake(limits, speech, is_description)
        conversation_id = history.create()
        for turn in range(1, TURN + 1):
            _keep_turn(history, conversation_id, keeper, photos, turn)
            if turn < TURN:
                history.append(conversation_id, StoredMessage("assistant", ANSWER))
        conversation = history.get(conversation_id)
        intake = Intake(limits, speech, is_description)
        started = time.perf_counter()
        messages = intake.model_messages(conversation, SYSTEM_PROMPT)
        built_s = time.perf_counter() - started
        _check(conversation, 0, messages)
        return built_s

    load_before = os.getloadavg()[0]
    # Both kinds of run in turns, so that a busier or quieter spell of a shared machine falls
    # on both.
    both = repeat(lambda: (one_run(), fresh_run()), runs)
    timed, fresh = [run for run, _ in both], [built_s for _, built_s in both]
    load_image(photos[0], limits)  # warms up
    per_photo = [seconds(lambda path=path: load_image(path, limits)) for path in photos]
    load_after = os.getloadavg()[0]
    figures = [
        figure(
            "intake",
            f"turn {TURN}, {PHOTOS} photos: model_messages (after turns 1-{TURN - 1})",
            "s",
            [built_s for built_s, _, _ in timed],
        ),
        figure(
            "intake",
            f"turn {TURN}: model_messages, this process's CPU",
            "s",
            [cpu_s for _, cpu_s, _ in timed],
        ),
        figure(
            "intake",
            f"turn {TURN}: sent_turns (counting, nothing decoded)",
            "s",
            [counted_s for _, _, counted_s in timed],
        ),
        figure(
            "intake",
            f"turn {TURN}: sent_turns + model_messages, as the page builds a request",
            "s",
            [built_s + counted_s for built_s, _, counted_s in timed],
        ),
        figure(
            "intake",
            f"turn {TURN}: model_messages by a new Intake (no earlier turn built)",
            "s",
            fresh,
        ),
        figure("intake", "one photo: load_image", "s", per_photo),
        figure("intake", f"making the {PHOTOS} photo files", "s", made_s),
    ]
    sizes = [path.stat().st_size for path in photos]
    details = {
        "photos": f"{PHOTOS} JPEGs of {PHOTO_PX[0]}x{PHOTO_PX[1]} (quality {JPEG_QUALITY}), "
        f"{sum(sizes) / 1e6:.1f} MB, {min(sizes) / 1e6:.1f} to {max(sizes) / 1e6:.1f} MB each",
        "conversation": f"{2 * TURN - 1} messages at turn {TURN}: one photo in each of turns "
        f"1-{PHOTOS}, an answer after each of turns 1-{TURN - 1}; kept by app.history.History",
        "system prompt": SYSTEM_PROMPT,
        "load average (1 min), before / after": f"{load_before:.2f} / {load_after:.2f}",
    }
    return figures, details


def make_photos(folder: Path, count: int) -> list[Path]:
    """`count` camera-like 12-megapixel JPEGs in `folder`, named as a phone names them."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(1, count + 1):
        path = folder / f"IMG_{index:04d}.jpg"
        camera_photo(PHOTO_PX, rng).save(path, "JPEG", quality=JPEG_QUALITY)
        paths.append(path)
    return paths


def _keep_turn(
    history: History, conversation_id: str, intake: Any, photos: list[Path], turn: int
) -> None:
    """Turn `turn`'s message kept as the page keeps it: a photo in each of the first turns
    (checked by the intake, copied into the data folder), text alone after."""
    sent = [str(photos[turn - 1])] if turn <= len(photos) else []
    text = QUESTION if sent else FOLLOW_UP
    files = intake.message_files({"text": text, "files": sent})
    history.append(conversation_id, intake.stored_user_message(text, files))


def _check(conversation: Conversation | None, left_out: int, messages: list) -> None:
    """The 10th turn is what it should be: every message and photo, all of them sent."""
    if conversation is None:
        raise RuntimeError("the kept conversation was not found")
    attached = sum(len(m.attachments) for m in conversation.messages)
    if attached != PHOTOS or len(conversation.messages) != 2 * TURN - 1 or left_out:
        raise RuntimeError(
            f"turn {TURN} holds {attached} photos in {len(conversation.messages)} messages, "
            f"{left_out} left out"
        )
    if sum(len(m.images) for m in messages) != PHOTOS:
        raise RuntimeError("the model's input lacks photos")


def _commit() -> str:
    """The code measured: its commit, and whether files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "app", "model"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' with changes to app/ or model/' if changed else ''}"


if __name__ == "__main__":
    main()
