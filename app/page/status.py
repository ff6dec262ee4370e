"""What the page says about the model: the banner at the top and the status line."""

from __future__ import annotations

from model import DEMO_FALLBACK_NOTE, EngineStatus, Timing

DEMO_NOTE = "Demo model: random weights, so replies are noise. It shows the plumbing works."


def status_text(status: EngineStatus, last: Timing | None) -> str:
    """One line about the model, and the last reply's speed."""
    if status.load_state == "loading":
        return f"Loading the model: {status.progress}"
    if status.load_state == "error" and status.kind == "remote":
        return status.error or ""
    if status.load_state == "error" or status.info is None:
        return f"No model loaded: {status.error}"
    info = status.info
    if info.engine == "remote":
        line = f"{info.name} on the model server at {info.url}"
    else:
        kind = "demo" if info.demo else "real"
        line = f"{info.name} ({kind}) on {info.device}, {info.quantization}"
        if info.backend_reason:
            line += f" · {info.backend_reason}"
    if last is not None and last.tokens:
        line += (
            f" · last reply: first token {last.time_to_first_token_s:.2f} s, "
            f"{last.tokens_per_s:.1f} tokens/s"
        )
    if status.notice:
        line += f" · {status.notice}"
    return line


def banner_text(status: EngineStatus) -> str:
    """What the top of the page must say, if anything: loading, fallback or failure."""
    if status.load_state == "loading":
        step = status.progress.rstrip(".")  # some steps are sentences with their own period
        return f"⏳ The model is loading: {step}. You can type your message meanwhile."
    if status.load_state == "error" and status.kind == "remote":
        return f"⚠️ {status.error}"
    if status.load_state == "error":
        return f"⚠️ No model could be loaded. {status.error}"
    if status.fallback_reason:
        return f"⚠️ Gemma 4 12B could not be loaded. {status.fallback_reason} {DEMO_FALLBACK_NOTE}"
    if status.info is not None and status.info.demo:
        return "ℹ️ " + DEMO_NOTE
    return ""
