"""Describing a folder: images per minute for `launch.py describe`'s job
(`app.tasks.batch.run_job`), in process and on a model server, and how much of the model's own
pace the job reaches.

The images are real files made for the run: photo-like pictures (gradients, shapes, grain) as
JPEG, screenshots of text and bar charts as PNG, from 640x480 to 1920x1080. The job runs as the
CLI runs it: the engine from `model.open_engine`, `launch.py describe`'s workers (in process 2:
one decodes an image while the model answers another; on a server `--engine-concurrency`, 8),
its default level and its progress line. Only the reply length is the benchmark's: the job asks
with `GenerationOptions()` (up to 512 tokens, and random weights stop anywhere), so an engine
wrapper holds every reply to the same length (`min_new_tokens` in process; on the server the
long-winded copy of the demo checkpoint, as in `bench/remote_speed.py`, with `max_tokens`).

The model's own pace: in process, the same requests (images decoded beforehand) submitted to the
same engine one at a time, back to back, and the worker's own time for each reply (`Timing`:
preparing the inputs, prefill, decoding), summed over the job's replies against the job's time;
on the server, the same request bodies (images encoded beforehand) sent straight with httpx, as
many at once as the job sends. Half of each model-alone run goes before the job and half after,
so that a busier or quieter spell of a shared machine falls on both.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image, ImageDraw, ImageFont

from app.config import Limits
from app.intake.image import load_image
from app.tasks.batch import DescribeJob, Summary, run_job
from app.tasks.batch_progress import ProgressLine
from app.tasks.describe import DEFAULT_LEVEL, description_messages
from model import (
    ChatRequest,
    Engine,
    EngineError,
    EngineStatus,
    Finished,
    GenerationOptions,
    ModelConfig,
    RemoteEngineConfig,
    ReplyEvent,
    ReplyStream,
    Timing,
    open_engine,
)
from model.openai_wire import request_body, sse_data

from .harness import Figure, figure
from .remote_speed import SERVER_REFUSES, SERVER_START_S, model_server

IN_PROCESS_WORKERS = 2  # as launch.py describe in process: one decodes while one runs
RUN_GOAL = 0.95  # the job's images per minute over the model's own, the same requests
# Per ten files: five photos (JPEG), three screenshots of text and two charts (PNG).
KINDS = ("photo", "screenshot", "photo", "chart", "photo", "screenshot", "photo", "screenshot")
KINDS += ("photo", "chart")
SIZES = ((1920, 1080), (1280, 720), (1024, 768), (800, 600), (1600, 1200), (640, 480))
SIZES += ((1080, 1350),)
WORDS = (
    "invoice total amount due account settings profile password saved changes network "
    "status running stopped error warning build passed failed report quarter revenue users "
    "active session timeout folder download upload images review approved pending shipping "
    "address order number customer support ticket priority high low medium release notes"
).split()


def make_images(folder: Path, count: int) -> dict[str, Any]:
    """`count` image files in `folder` (KINDS in turn, SIZES in turn); what was made."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    made = {"photo": 0, "screenshot": 0, "chart": 0}
    total_bytes = 0
    for index in range(count):
        kind, size = KINDS[index % len(KINDS)], SIZES[index % len(SIZES)]
        if kind == "photo":
            path = folder / f"{index:03d}-photo.jpg"
            _photo(size, rng).save(path, "JPEG", quality=88)
        else:
            path = folder / f"{index:03d}-{kind}.png"
            drawn = _screenshot(size, rng) if kind == "screenshot" else _chart(size, rng)
            drawn.save(path, "PNG")
        made[kind] += 1
        total_bytes += path.stat().st_size
    return {
        "files": count,
        "photos (JPEG)": made["photo"],
        "screenshots of text (PNG)": made["screenshot"],
        "bar charts (PNG)": made["chart"],
        "sizes": ", ".join(f"{w}x{h}" for w, h in SIZES),
        "MB on disk": round(total_bytes / 1e6, 1),
    }


def _photo(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A gradient sky over a ground colour, a few soft shapes, and sensor-like grain."""
    width, height = size
    top, bottom = rng.integers(0, 256, (2, 3)).astype(np.float32)
    down = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    across = np.linspace(-20, 20, width, dtype=np.float32)[None, :, None]
    base = np.clip(top * (1 - down) + bottom * down + across, 0, 255).astype(np.uint8)
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 9))):
        x, y = rng.integers(0, width), rng.integers(0, height)
        rx, ry = rng.integers(width // 20, width // 4), rng.integers(height // 20, height // 4)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
    grain = rng.standard_normal((height, width, 3), dtype=np.float32) * 9
    pixels = np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def _screenshot(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A window: a title bar, a side bar, and lines of text in the default font."""
    width, height = size
    dark = bool(rng.integers(0, 2))
    background, ink = ((30, 30, 36), (225, 225, 225)) if dark else ((250, 250, 250), (20, 20, 20))
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width, 36), fill=(60, 90, 150))
    font = ImageFont.load_default(size=int(rng.integers(14, 24)))
    draw.text((12, 8), " ".join(rng.choice(WORDS, 4)).title(), fill=(255, 255, 255), font=font)
    side = width // 5
    draw.rectangle((0, 36, side, height), fill=(50, 50, 60) if dark else (232, 236, 242))
    line_height = font.size + 10
    for row, y in enumerate(range(50, height - line_height, line_height)):
        if row < 12:
            draw.text((12, y), str(rng.choice(WORDS)).title(), fill=ink, font=font)
        words = rng.choice(WORDS, int(rng.integers(3, 12)))
        draw.text((side + 16, y), " ".join(words).capitalize() + ".", fill=ink, font=font)
    return image


def _chart(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A bar chart with a title, axes, labelled bars and their values."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, height // 40))
    title = f"{str(rng.choice(WORDS)).title()} by month"
    draw.text((width // 10, height // 30), title, fill="black", font=font)
    left, right, top, bottom = width // 10, width - width // 20, height // 8, height - height // 8
    draw.line((left, top, left, bottom, right, bottom), fill="black", width=2)
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov")
    bars = int(rng.integers(5, len(months) + 1))
    step = (right - left) / bars
    colour = tuple(int(c) for c in rng.integers(0, 200, 3))
    for bar, value in enumerate(rng.integers(5, 100, bars)):
        x0 = left + bar * step + step * 0.15
        y0 = bottom - (bottom - top) * value / 100
        draw.rectangle((x0, y0, x0 + step * 0.7, bottom), fill=colour)
        draw.text((x0, y0 - font.size - 4), str(value), fill="black", font=font)
        draw.text((x0, bottom + 6), months[bar], fill="black", font=font)
    return image


class FixedLength:
    """An engine whose replies all run to `tokens` tokens (the job's other options kept), noting
    each finished reply's Timing."""

    def __init__(self, inner: Engine, tokens: int):
        self.inner, self.tokens = inner, tokens
        self.timings: list[Timing] = []

    def start(self) -> None:
        self.inner.start()

    def status(self) -> EngineStatus:
        return self.inner.status()

    def close(self) -> None:
        self.inner.close()

    def forced(self, request: ChatRequest) -> ChatRequest:
        options = replace(request.options, max_new_tokens=self.tokens, min_new_tokens=self.tokens)
        return replace(request, options=options)

    def submit(self, request: ChatRequest) -> _Noted:
        return _Noted(self.inner.submit(self.forced(request)), self.timings)


class _Noted:
    """A ReplyStream that adds its Finished event's Timing to `timings`."""

    def __init__(self, stream: ReplyStream, timings: list[Timing]):
        self.stream, self.timings = stream, timings

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __iter__(self) -> Iterator[ReplyEvent]:
        for event in self.stream:
            if isinstance(event, Finished) and not event.cancelled:
                self.timings.append(event.timing)  # one append: safe from the job's threads
            yield event


@dataclass
class JobRun:
    """One run of the job: its summary, wall time, progress lines and replies' Timings."""

    summary: Summary
    wall_s: float
    lines: list[str]
    timings: list[Timing]
    loupe_cpu_s: float  # this process: the job's threads and the engine's
    model_cpu_s: float  # the model's process: the worker, or the server

    @property
    def per_minute(self) -> float:
        return 60 * self.summary.done / self.wall_s


def _run_job(
    engine: FixedLength, folder: Path, out: Path, workers: int, model: psutil.Process
) -> JobRun:
    """The job over `folder` at the CLI's default level, as `launch.py describe` runs it;
    `model` is the process the model runs in."""
    job = DescribeJob((str(folder),), DEFAULT_LEVEL, out)
    engine.timings.clear()
    lines = io.StringIO()  # not a terminal: a line per file, as in a log
    progress = ProgressLine(lines)
    cpu = [0.0, 0.0]
    with _cpu_counted(cpu, psutil.Process(), model):
        started = time.perf_counter()
        summary = run_job(job, engine, Limits(), workers, progress.update)
        wall_s = time.perf_counter() - started
    lines_out = lines.getvalue().splitlines()
    return JobRun(summary, wall_s, lines_out, list(engine.timings), *cpu)


@contextmanager
def _cpu_counted(totals: list[float], *processes: psutil.Process) -> Iterator[None]:
    """Adds to `totals` the CPU seconds each process (all its threads) uses meanwhile."""
    before = [_cpu_s(process) for process in processes]
    yield
    for index, process in enumerate(processes):
        totals[index] += _cpu_s(process) - before[index]


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _requests(folder: Path) -> tuple[list[ChatRequest], list[float]]:
    """The job's requests for the files in `folder`, images decoded now as the job decodes
    them; the seconds each file took to decode (`app.intake.image.load_image`)."""
    requests, decoding = [], []
    for path in sorted(folder.iterdir()):
        started = time.perf_counter()
        image = load_image(path, Limits())
        decoding.append(seconds_since(started))
        requests.append(ChatRequest(tuple(description_messages(image, DEFAULT_LEVEL))))
    return requests, decoding


def _wait_until_ready(engine: FixedLength) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while (status := engine.status()).load_state != "ready":
        if status.load_state == "error" or time.monotonic() > deadline:
            raise RuntimeError(f"the engine is not ready: {status.error or status.progress}")
        time.sleep(0.05)


def _reply(engine: FixedLength, request: ChatRequest) -> Timing:
    for event in engine.submit(request):
        if isinstance(event, EngineError):
            raise RuntimeError(f"the engine answered {event}")
        if isinstance(event, Finished):
            return event.timing
    raise RuntimeError("the reply ended without Finished")


def _worker_s(timing: Timing) -> float:
    """The worker's own time for a reply: preparing, prefill, first token, then the rest."""
    rest = (timing.tokens - 1) / timing.tokens_per_s if timing.tokens_per_s else 0.0
    return timing.time_to_first_token_s + rest


def _warm_up_request() -> ChatRequest:
    """An image that is not one of the job's (the worker keeps the last inputs it prepared)."""
    image = _photo((800, 600), np.random.default_rng(99))
    return ChatRequest(tuple(description_messages(image, DEFAULT_LEVEL)))


def measure(
    config: ModelConfig, miniature: Path, count: int, tokens: int
) -> tuple[list[Figure], list[str], dict[str, Any]]:
    """Both runs over `count` new image files, `tokens` tokens a reply: (figures, notes,
    details)."""
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="loupe-bench-batch-"))
    try:
        folder = work / "images"
        started = time.perf_counter()
        made = make_images(folder, count)
        figures = [figure("batch", f"making the {count} image files", "s", seconds_since(started))]
        local_figures, local_notes, local_details = _in_process(config, folder, work, tokens)
        remote_figures, remote_notes, remote_details = _on_server(miniature, folder, work, tokens)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]
    details = {
        "batch images": made,
        "batch reply tokens": tokens,
        "batch image detail": _detail(),
        "batch load average (1 min), before / after": f"{load_before:.2f} / {load_after:.2f}",
    }
    details |= local_details | remote_details
    return figures + local_figures + remote_figures, local_notes + remote_notes, details


def _detail() -> str:
    """The image detail the job asks for (`GenerationOptions()`'s: 0 is Auto)."""
    budget = GenerationOptions().image_tokens
    return f"{budget} image tokens" if budget else "Auto (the engine chooses per image)"


def seconds_since(started: float) -> float:
    return time.perf_counter() - started


def _in_process(
    config: ModelConfig, folder: Path, work: Path, tokens: int
) -> tuple[list[Figure], list[str], dict[str, Any]]:
    workers = IN_PROCESS_WORKERS
    engine = FixedLength(open_engine(config, queue_size=max(workers, Limits().queue_size)), tokens)
    engine.start()
    try:
        _wait_until_ready(engine)
        for _ in range(2):
            _reply(engine, _warm_up_request())
        requests, decoding = _requests(folder)
        half = len(requests) // 2
        # Half the model-alone run before the job and half after: a shared machine's busier
        # or quieter spell falls on both.
        worker, alone_cpu = psutil.Process(engine.inner.worker_pid), [0.0]
        started = time.perf_counter()
        with _cpu_counted(alone_cpu, worker):
            alone = [_reply(engine, request) for request in requests[:half]]
        alone_s = seconds_since(started)
        run = _run_job(engine, folder, work / "in-process.jsonl", workers, worker)
        started = time.perf_counter()
        with _cpu_counted(alone_cpu, worker):
            alone += [_reply(engine, request) for request in requests[half:]]
        alone_s += seconds_since(started)
    finally:
        engine.close()
    count = len(requests)
    alone_per_minute = 60 * count / alone_s
    ratio = run.per_minute / alone_per_minute
    busy = sum(_worker_s(t) for t in run.timings) / run.wall_s
    alone_busy = sum(_worker_s(t) for t in alone) / alone_s
    name = f"in process, {count} images, {workers} at a time"
    figures = [
        figure("batch", f"{name} (launch.py describe)", "images/min", run.per_minute),
        figure(
            "batch",
            "in process, the same requests one by one (model alone)",
            "images/min",
            alone_per_minute,
        ),
        figure("batch", "in process, the job over the model alone", "ratio", ratio),
        figure("batch", "in process, the worker busy, share of the job's time", "share", busy),
        figure("batch", "in process, the worker busy, one by one", "share", alone_busy),
        figure(
            "batch",
            "in process, the worker's time per image (job)",
            "s",
            [_worker_s(t) for t in run.timings],
        ),
        figure(
            "batch",
            "in process, the worker's time per image (one by one)",
            "s",
            [_worker_s(t) for t in alone],
        ),
        figure("batch", "decoding an image file (load_image), per image", "s", decoding),
        figure(
            "batch",
            "in process, CPU per image in the job: Loupe (this process)",
            "ms",
            1000 * run.loupe_cpu_s / count,
        ),
        figure(
            "batch",
            "in process, CPU per image in the job: the model's worker",
            "ms",
            1000 * run.model_cpu_s / count,
        ),
        figure(
            "batch",
            "in process, CPU per image one by one: the model's worker",
            "ms",
            1000 * alone_cpu[0] / count,
        ),
    ]
    notes = [
        f"batch in process: {run.per_minute:.1f} images per minute ({count} in "
        f"{run.wall_s:.0f} s, {workers} at a time); the same requests one by one "
        f"{alone_per_minute:.1f}; the job over the model alone {ratio:.3f} (goal {RUN_GOAL}: "
        f"{_met(ratio >= RUN_GOAL)}); the worker busy {busy:.3f} of the job's time (goal "
        f"{RUN_GOAL}: {_met(busy >= RUN_GOAL)}; {alone_busy:.3f} one by one)",
        *_run_notes("in process", run, tokens),
    ]
    return figures, notes, {"batch progress in process": _sample(run.lines)}


def _on_server(
    miniature: Path, folder: Path, work: Path, tokens: int
) -> tuple[list[Figure], list[str], dict[str, Any]]:
    (work / "server").mkdir()
    with model_server(miniature, work / "server") as (url, model, _):
        remote = RemoteEngineConfig(url, model=model)  # --engine-concurrency's default
        workers = remote.concurrency  # as launch.py describe on a server
        engine = FixedLength(
            open_engine(remote, queue_size=max(workers, Limits().queue_size)), tokens
        )
        engine.start()
        try:
            _wait_until_ready(engine)
            _reply(engine, _warm_up_request())  # RemoteEngine learns what the server refuses
            bodies, encoding = [], []
            for request in [_warm_up_request(), *_requests(folder)[0]]:
                started = time.perf_counter()
                bodies.append(request_body(engine.forced(request), model, SERVER_REFUSES))
                encoding.append(seconds_since(started))
            limits = httpx.Limits(max_connections=workers + 2)
            timeout = httpx.Timeout(300, connect=5)
            with httpx.Client(base_url=url, timeout=timeout, limits=limits) as http:
                _stream(http, bodies.pop(0))  # warms up
                half = len(bodies) // 2
                server = _server_process()
                cpu = [0.0, 0.0]  # this process (the client), the server: straight
                # Half the straight run before the job and half after, as in process.
                with _cpu_counted(cpu, psutil.Process(), server):
                    straight_s, counted = _straight(http, bodies[:half], workers)
                run = _run_job(engine, folder, work / "on-server.jsonl", workers, server)
                with _cpu_counted(cpu, psutil.Process(), server):
                    after_s, after = _straight(http, bodies[half:], workers)
                straight_s, counted = straight_s + after_s, counted + after
        finally:
            engine.close()
    count = len(bodies)
    straight_per_minute = 60 * count / straight_s
    ratio = run.per_minute / straight_per_minute
    figures = [
        figure(
            "batch",
            f"on transformers serve, {count} images, {workers} at a time (RemoteEngine)",
            "images/min",
            run.per_minute,
        ),
        figure(
            "batch",
            f"on transformers serve, the same requests straight, {workers} at a time (httpx)",
            "images/min",
            straight_per_minute,
        ),
        figure("batch", "on transformers serve, the job over straight", "ratio", ratio),
        figure(
            "batch",
            "on transformers serve, CPU per image in the job: Loupe (this process)",
            "ms",
            1000 * run.loupe_cpu_s / count,
        ),
        figure(
            "batch",
            "on transformers serve, CPU per image in the job: the server",
            "ms",
            1000 * run.model_cpu_s / count,
        ),
        figure(
            "batch",
            "on transformers serve, CPU per image straight: the client (httpx)",
            "ms",
            1000 * cpu[0] / count,
        ),
        figure(
            "batch",
            "on transformers serve, CPU per image straight: the server",
            "ms",
            1000 * cpu[1] / count,
        ),
        figure(
            "batch",
            "encoding an image for the server (request body: PNG or JPEG, base64), per image",
            "s",
            encoding[1:],
        ),
        figure(
            "batch",
            "encoding an image for the server, mean",
            "s",
            sum(encoding[1:]) / count,
        ),
    ]
    exact = sum(n == tokens for n in counted)
    notes = [
        f"batch on transformers serve: {run.per_minute:.1f} images per minute ({count} in "
        f"{run.wall_s:.0f} s, {workers} at a time through RemoteEngine); the same requests "
        f"straight {straight_per_minute:.1f}; the job over straight {ratio:.3f} (goal "
        f"{RUN_GOAL}: {_met(ratio >= RUN_GOAL)}); straight replies of exactly {tokens} tokens: "
        f"{exact} of {len(counted)}",
        *_run_notes("on transformers serve", run, tokens),
    ]
    return figures, notes, {"batch progress on transformers serve": _sample(run.lines)}


def _server_process() -> psutil.Process:
    """The model server this process started (`transformers serve`)."""
    for child in psutil.Process().children():
        if "serve" in child.cmdline():
            return child
    raise RuntimeError("the model server's process was not found")


def _straight(
    http: httpx.Client, bodies: list[dict[str, Any]], at_once: int
) -> tuple[float, list[int]]:
    """Seconds to stream every body's reply, `at_once` at a time; each reply's token count."""
    pending, lock = iter(bodies), threading.Lock()
    counted: list[int] = []
    failures: list[BaseException] = []

    def sender() -> None:
        try:
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                counted.append(_stream(http, body))
        except BaseException as exc:  # reported below, on the measuring thread
            failures.append(exc)

    threads = [threading.Thread(target=sender) for _ in range(at_once)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = seconds_since(started)
    if failures:
        raise RuntimeError(f"a request straight to the server failed: {failures[0]}")
    return took, counted


def _stream(http: httpx.Client, body: dict[str, Any]) -> int:
    """Stream one reply to its end; the tokens the server counted (-1: it sent no count)."""
    counted = -1
    with http.stream("POST", "/chat/completions", json=body) as response:
        response.raise_for_status()
        for data in sse_data(response.iter_lines()):
            counted = (data.get("usage") or {}).get("completion_tokens", counted)
    return counted


def _run_notes(where: str, run: JobRun, tokens: int) -> list[str]:
    """What the run looked like: its summary, its replies' lengths, a few progress lines."""
    exact = sum(t.tokens == tokens for t in run.timings)
    lines = _sample(run.lines)
    return [
        f"batch {where}, the job's summary: {run.summary.sentence()} Replies of exactly "
        f"{tokens} tokens: {exact} of {len(run.timings)}",
        f"batch {where}, progress lines: " + " | ".join(lines),
    ]


def _sample(lines: list[str]) -> list[str]:
    """The first two progress lines, the middle one and the last two."""
    if len(lines) <= 5:
        return lines
    return [*lines[:2], lines[len(lines) // 2], *lines[-2:]]


def _met(met: bool) -> str:
    return "met" if met else "not met"
