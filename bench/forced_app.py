"""`launch.py` with each reply held to its full length and its chunks' send times logged.

For the app benchmark (bench/app_speed.py). Random weights stop at a random stop token, so
replies are forced to `max_new_tokens`, as raw `generate` is when timed. After each reply, one
line of JSON goes to LOG: [[answer length so far, worker send time, time the page's handler
took it], ...] for each answer chunk (times from time.time()), so the client can match each
chunk to the update that brought it, and tell the engine's share of the delay from Gradio's.
The engine wrapper is the one every stage uses (`bench.serving.FixedLength`).

    python -m bench.forced_app LOG [launch.py flags]
"""

from __future__ import annotations

import sys
from pathlib import Path

import launch
from model import open_engine

from .serving import FixedLength

if __name__ == "__main__":
    log = Path(sys.argv[1])
    launch.open_engine = lambda *args, **kwargs: FixedLength(open_engine(*args, **kwargs), log=log)
    sys.exit(launch.main(sys.argv[2:]))
