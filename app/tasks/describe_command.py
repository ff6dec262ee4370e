"""`launch.py describe`: describe a whole folder of images from the command line, with a
progress line; a stopped run goes on where it stopped."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from model import open_engine

from ..command_line import (
    add_engine_flags,
    add_limit_flags,
    build_limits,
    engine_config,
    model_problem,
    show_log,
)
from ..config import Limits
from .batch import DescribeJob, Stopped, job_problem, run_job, workers_for
from .batch_progress import ProgressLine
from .batch_rows import VERDICT_COLUMNS
from .batch_writes import writes_problem
from .describe import DEFAULT_LEVEL, LEVELS


def parse_describe_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="launch.py describe",
        description="Describe many images: alt text, descriptions or a content check for every "
        "file, written to CSV or JSON Lines. Run it again with the same --out to continue a "
        "stopped run.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="images, folders or patterns")
    parser.add_argument(
        "--level",
        choices=list(LEVELS),
        default=DEFAULT_LEVEL,
        help="what to write for each image (default %(default)s); check_content asks for a "
        "moderation verdict, in the columns " + ", ".join(VERDICT_COLUMNS) + " (scores from 0 "
        "to 1; verdict_problem says why when the answer holds no verdict)",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="results.csv or results.jsonl"
    )
    parser.add_argument(
        "--context",
        default="",
        metavar="TEXT",
        help='what the images are for, e.g. "product page of an outdoor shop"',
    )
    parser.add_argument(
        "--force", action="store_true", help="describe again what an earlier run finished"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files in the way that Loupe did not write (an --out, sidecars, copies in "
        "--out-dir) and read-only ones; without it the run refuses before it starts",
    )
    files = parser.add_argument_group("alt text into the image files (JPEG, PNG, WebP)")
    files.add_argument(
        "--write-metadata",
        action="store_true",
        help="write the alt text (and a complex image's long description) into the files' IPTC "
        "accessibility fields and dc:description, in copies in --out-dir or with --in-place",
    )
    files.add_argument("--out-dir", type=Path, metavar="DIR", help="where the copies go")
    files.add_argument(
        "--in-place", action="store_true", help="write into the original files themselves"
    )
    files.add_argument(
        "--sidecar",
        action="store_true",
        help="a text file with the alt text beside each image, named after it: photo.jpg.txt",
    )
    add_engine_flags(parser)
    add_limit_flags(parser)
    parser.set_defaults(queue_size=Limits.queue_size)
    return parser.parse_args(argv)


def describe(argv: list[str]) -> int:
    """`launch.py describe`: a whole folder of images, with progress; 0 when every file was
    described, 1 when some failed, 130 when stopped."""
    args = parse_describe_args(argv)
    model, remote = engine_config(args)
    limits = build_limits(args)
    if args.write_metadata != bool(args.out_dir or args.in_place):
        print(
            "--write-metadata writes into copies in --out-dir DIR, or with --in-place into the "
            "files themselves; give one of them with it.",
            file=sys.stderr,
        )
        return 2
    job = DescribeJob(
        tuple(args.paths),
        args.level,
        args.out,
        args.context,
        args.force,
        out_dir=args.out_dir,
        in_place=args.in_place,
        sidecar=args.sidecar,
        overwrite=args.overwrite,
    )
    problem = job_problem(job) or model_problem(model, remote) or writes_problem(job)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    show_log()
    workers = workers_for(remote)
    engine = open_engine(remote or model, queue_size=max(workers, limits.queue_size))
    engine.start()
    try:
        failure = wait_for_model(engine)
        if failure:
            print(failure, file=sys.stderr)
            return 2
        line = ProgressLine(sys.stderr)
        summary = run_job(job, engine, limits, workers, line.update)
    except Stopped:
        print(f"\nStopped. What was finished is in {job.out}; run again to go on.", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ctrl+C while the model loads
        print("\nStopped before the model had loaded; nothing was described.", file=sys.stderr)
        return 130
    finally:
        engine.close()
    print(f"{summary.sentence()} Results in {job.out}.", file=sys.stderr)
    return 1 if summary.failed else 0


def wait_for_model(engine) -> str | None:
    """Wait until the engine has its model; the failure sentence, or None."""
    while (status := engine.status()).load_state == "loading":
        time.sleep(0.2)
    return status.error if status.load_state == "error" else None
