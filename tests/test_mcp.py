"""Loupe as an MCP server: the official `mcp` SDK's client lists Loupe's tools at /mcp on the
session's demo app and calls each on real files (a photo, a PDF, spoken English)."""

from __future__ import annotations

import asyncio
import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from app.tasks.describe import AI_NOTICE, alt_text_of
from bench.samples import photo
from tests.conftest import MAX_WER, QUESTION, word_error_rate

TOOLS = {"describe_image", "ask_about_image", "read_text", "transcribe", "check_content"}


def encoded(image: Image.Image, kind: str = "PNG", **options: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def calls(url: str, *requests: tuple[str, dict], key: str = "") -> tuple[list, list]:
    """The tools Loupe lists at `url`/mcp, and the results of calling `requests` (name,
    arguments) one after the other, through one client session."""

    async def session() -> tuple[list, list]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        http = httpx2.AsyncClient(headers=headers, timeout=120)
        async with Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
            listed = (await client.list_tools()).tools
            results = [await client.call_tool(name, arguments) for name, arguments in requests]
        return listed, results

    # In a thread of its own: Playwright's sync API keeps an event loop in the main thread.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, session()).result()


def text_of(result) -> str:
    assert not result.is_error, result.content
    [content] = result.content
    return content.text


def test_an_mcp_client_lists_the_tools_and_calls_each(demo_app, spoken_question: Path):
    url, _ = demo_app
    picture = encoded(photo())
    pages = [photo(200, 280, seed) for seed in range(12)]
    document = encoded(pages[0], "PDF", save_all=True, append_images=pages[1:])
    speech = base64.b64encode(spoken_question.read_bytes()).decode("ascii")
    listed, results = calls(
        url,
        ("describe_image", {"image": picture, "level": "alt_text", "context": "a shop's page"}),
        ("ask_about_image", {"images": [picture, encoded(photo(seed=1))], "question": "Alike?"}),
        ("read_text", {"file": document}),
        ("read_text", {"file": document, "pages": "11-12"}),
        ("transcribe", {"audio": speech}),
        ("check_content", {"image": picture}),
    )
    assert {tool.name for tool in listed} == TOOLS
    describe = next(tool for tool in listed if tool.name == "describe_image")
    assert describe.input_schema["properties"]["level"]["enum"] == [
        "brief", "detailed", "alt_text", "read_text", "diagram"
    ]  # fmt: skip
    assert describe.description.startswith("A description of the image for someone who cannot")
    described, asked, first_pages, named_pages, heard, checked = results
    assert text_of(described).startswith(f"{AI_NOTICE} ")
    assert alt_text_of(text_of(described)).kind in ("decorative", "informative", "complex")
    assert text_of(asked) and not text_of(asked).startswith(AI_NOTICE)
    # The PDF went through the page's intake: ten of its twelve pages, and a note that says so.
    assert text_of(first_pages).startswith(
        f"{AI_NOTICE} *document.pdf: pages 1-10 of 12 were read. Loupe reads at most 10 pages"
    )
    assert text_of(named_pages).startswith(f"{AI_NOTICE} ") and "*" not in text_of(named_pages)[:40]
    transcript = heard.structured_content
    assert word_error_rate(QUESTION, transcript["text"]) < MAX_WER, transcript
    assert transcript["language"] == "en" and transcript["segments"][0]["start"] >= 0
    document_keys = {"notice", "verdict", "verdict_problem", "answer"}
    assert set(checked.structured_content) == document_keys
    assert checked.structured_content["notice"] == AI_NOTICE
    assert checked.structured_content["verdict"] is not None  # held to its schema


def test_mcp_refusals_are_one_sentence_each(demo_app, tmp_path: Path):
    url, _ = demo_app
    notes = base64.b64encode(b"Shopping list: eggs, milk.\n").decode("ascii")
    _, results = calls(
        url,
        ("describe_image", {"image": "not base64!"}),
        ("describe_image", {"image": notes}),
        ("ask_about_image", {"images": [], "question": "What?"}),
        ("transcribe", {"audio": encoded(photo())}),
    )
    sentences = []
    for result in results:
        assert result.is_error
        [content] = result.content
        sentences.append(content.text.split(": ", 1)[1])  # after "Error executing tool X"
    assert sentences[0] == "image is not base64: send the file's bytes as base64."
    assert "holds a text file, not an image" in sentences[1]
    assert sentences[2] == "Send at least one image to ask about."
    assert sentences[3].endswith(".") and "Traceback" not in sentences[3]
    # A web page of another site is refused before any tool runs, as for /v1.
    foreign = httpx.post(
        f"{url}/mcp/", json={}, headers={"Origin": "https://elsewhere.example"}, timeout=10
    )
    assert foreign.status_code == 403
