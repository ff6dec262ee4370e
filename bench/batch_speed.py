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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from app.config import Limits
from app.intake.image import load_image
from app.tasks.batch import DescribeJob, Summary, run_job
from app.tasks.batch_progress import ProgressLine
from app.tasks.describe import DEFAULT_LEVEL, description_messages
from model import (
    ChatRequest,
    EngineError,
    Finished,
    GenerationOptions,
    ModelConfig,
    RemoteEngineConfig,
    Timing,
    open_engine,
)
from model.openai_wire import request_body, sse_data

from .harness import Figure, figure
from .remote_speed import SERVER_REFUSES
from .samples import bar_chart, camera_photo, text_screenshot
from .serving import START_S, FixedLength, Shared, wait_until_ready

IN_PROCESS_WORKERS = 2  # as launch.py describe in process: one decodes while one runs
RUN_GOAL = 0.95  # the job's images per minute over the model's own, the same requests
# Per ten files: five photos (JPEG), three screenshots of text and two charts (PNG).
KINDS = ("photo", "screenshot", "photo", "chart", "photo", "screenshot", "photo", "screenshot")
KINDS += ("photo", "chart")
SIZES = ((1920, 1080), (1280, 720), (1024, 768), (800, 600), (1600, 1200), (640, 480))
SIZES += ((1080, 1350),)


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
            camera_photo(size, rng).save(path, "JPEG", quality=88)
        else:
            path = folder / f"{index:03d}-{kind}.png"
            drawn = text_screenshot(size, rng) if kind == "screenshot" else bar_chart(size, rng)
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


def _around_the_job(
    alone: Callable[[list], list],
    items: list,
    job: Callable[[], JobRun],
    *processes: psutil.Process,
) -> tuple[JobRun, float, list, list[float]]:
    """The job, and the model alone (`alone` over `items`) half before it and half after, so
    that a busier or quieter spell of a shared machine falls on both: (the job's run, the
    model alone's seconds, its results, the CPU seconds each of `processes` used in it)."""
    cpu, results, spent = [0.0] * len(processes), [], [0.0]

    def alone_over(part: list) -> None:
        started = time.perf_counter()
        with _cpu_counted(cpu, *processes):
            results.extend(alone(part))
        spent[0] += seconds_since(started)

    half = len(items) // 2
    alone_over(items[:half])
    run = job()
    alone_over(items[half:])
    return run, spent[0], results, cpu


def _cpu_per_image(
    where: str,
    run: JobRun,
    model: str,
    alone: str,
    alone_names: list[str],
    alone_cpu: list[float],
    count: int,
) -> list[Figure]:
    """CPU per image in the job (Loupe's process, the model's) and without it (`alone`: each
    of `alone_names`' processes), in ms."""
    used = [("in the job: Loupe (this process)", run.loupe_cpu_s)]
    used += [(f"in the job: {model}", run.model_cpu_s)]
    named = zip(alone_names, alone_cpu, strict=True)
    used += [(f"{alone}: {name}", cpu_s) for name, cpu_s in named]
    return [
        figure("batch", f"{where}, CPU per image {what}", "ms", 1000 * cpu_s / count)
        for what, cpu_s in used
    ]


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
    image = camera_photo((800, 600), np.random.default_rng(99))
    return ChatRequest(tuple(description_messages(image, DEFAULT_LEVEL)))


def measure(
    shared: Shared, config: ModelConfig, miniature: Path, count: int, tokens: int
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
        remote_figures, remote_notes, remote_details = _on_server(
            shared, miniature, folder, work, tokens
        )
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
        wait_until_ready(engine, START_S)
        for _ in range(2):
            _reply(engine, _warm_up_request())
        requests, decoding = _requests(folder)
        worker = psutil.Process(engine.inner.worker_pid)
        run, alone_s, alone, alone_cpu = _around_the_job(
            lambda part: [_reply(engine, request) for request in part],
            requests,
            lambda: _run_job(engine, folder, work / "in-process.jsonl", workers, worker),
            worker,
        )
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
        *_cpu_per_image(
            "in process",
            run,
            "the model's worker",
            "one by one",
            ["the model's worker"],
            alone_cpu,
            count,
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
    shared: Shared, miniature: Path, folder: Path, work: Path, tokens: int
) -> tuple[list[Figure], list[str], dict[str, Any]]:
    url, model, _ = shared.model_server(miniature)
    remote = RemoteEngineConfig(url, model=model)  # --engine-concurrency's default
    workers = remote.concurrency  # as launch.py describe on a server
    engine = FixedLength(open_engine(remote, queue_size=max(workers, Limits().queue_size)), tokens)
    engine.start()
    try:
        wait_until_ready(engine, START_S)
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
            server = _server_process()
            # cpu: this process (the client) and the server, straight
            run, straight_s, counted, cpu = _around_the_job(
                lambda part: _straight(http, part, workers),
                bodies,
                lambda: _run_job(engine, folder, work / "on-server.jsonl", workers, server),
                psutil.Process(),
                server,
            )
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
        *_cpu_per_image(
            "on transformers serve",
            run,
            "the server",
            "straight",
            ["the client (httpx)", "the server"],
            cpu,
            count,
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


def _straight(http: httpx.Client, bodies: list[dict[str, Any]], at_once: int) -> list[int]:
    """Stream every body's reply, `at_once` at a time; each reply's token count."""
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
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"a request straight to the server failed: {failures[0]}")
    return counted


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
