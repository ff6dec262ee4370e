"""What both engines' reply loops in the worker share: the temperature below which decoding is
greedy, and how a failed reply is told to the engine (one sentence; out of memory, the worker is
replaced)."""

from __future__ import annotations

from multiprocessing.connection import Connection

from .loader import first_line

SAMPLING_FLOOR = 1e-5  # temperatures below this mean greedy decoding
# Out of memory, the worker exits instead of carrying on: only a fresh process is sure to give
# back everything (the caching allocator's fragments, tensors the failed step still holds,
# library workspaces), and reloading costs the weights' read from the OS cache, seconds.
REPLACED_AFTER = ("out_of_memory",)
OUT_OF_MEMORY = (
    "The model ran out of memory on this message and is restarting; send it again with a "
    "lower image detail, fewer images or shorter audio."
)


def send_failure(conn: Connection, request_id: int, exc: Exception, out_of_memory: bool) -> bool:
    """Tell the parent in one sentence that a reply failed while being generated; False when
    this worker must be replaced (out of memory: see REPLACED_AFTER)."""
    if out_of_memory:
        conn.send(("error", request_id, "out_of_memory", OUT_OF_MEMORY))
        return False
    conn.send(
        (
            "error",
            request_id,
            "generation_failed",
            f"The model failed while answering ({type(exc).__name__}: {first_line(exc)}).",
        )
    )
    return True
