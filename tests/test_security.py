"""A launched --demo app under attack and bad input: foreign Host and Origin headers, path
traversal against Gradio's file routes, oversize and too many uploads, renamed executables;
each refused in one sentence, and the app keeps serving."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from starlette.datastructures import Headers

from app.config import AppConfig, Limits
from app.server import FOREIGN_HOST, FOREIGN_ORIGIN, HostGuard, allowed_hosts
from bench.samples import photo
from launch import build_config, parse_args
from tests.conftest import ROOT, console_text, health_when_loaded, start_app, stop_app
from tests.test_media import png_declaring
from tests.test_pdf import ONE_PAGE, handmade_pdf

MAX_FILE_MB = 1
MAX_FILES = 2
ALLOWED = "loupe.example"


@pytest.fixture(scope="module")
def strict_process(
    miniature: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen, str]]:
    """A --demo app with small upload limits and one extra allowed host name, and its URL."""
    data = tmp_path_factory.mktemp("strict-data")
    flags = ["--demo", "--max-file-mb", str(MAX_FILE_MB), "--max-files", str(MAX_FILES)]
    process, url = start_app(*flags, "--allowed-host", ALLOWED, env={"LOUPE_DATA_DIR": str(data)})
    try:
        health_when_loaded(process, url)
        yield process, url
    finally:
        output = stop_app(process)
        assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def strict_app(strict_process: tuple[subprocess.Popen, str]) -> str:
    return strict_process[1]


def raw_get(url: str, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET with the request target sent byte for byte (httpx would resolve ../ itself)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", target, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def still_serving(url: str) -> None:
    """The app answers a plain message after whatever came before."""
    reply = Client(url, verbose=False).predict(
        {"text": "Hello", "files": []}, max_new_tokens=16, api_name="/chat"
    )
    assert isinstance(reply, str)
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


# -- flags ----------------------------------------------------------------------------------------


def test_limit_flags_and_their_environment_defaults(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOUPE_MAX_FILE_MB", "7")
    monkeypatch.setenv("LOUPE_ALLOWED_HOSTS", "a.example,B.example")
    config = build_config(
        parse_args(["--max-files", "3", "--max-image-mp", "12.5", "--max-audio-s", "60"])
    )
    assert config.limits == Limits(
        max_files_per_message=3, max_file_mb=7, max_image_mp=12.5, max_audio_s=60
    )
    assert config.allowed_hosts == ("a.example", "b.example")
    with pytest.raises(SystemExit, match=r"^--max-message-chars must be above zero, not 0\.$"):
        build_config(parse_args(["--max-message-chars", "0"]))


def test_on_the_network_ip_addresses_and_the_machine_name_are_served():
    def problem(host_header: str, bound: str) -> str | None:
        hosts, any_ip = allowed_hosts(AppConfig(host=bound))
        return HostGuard(None, hosts, any_ip).problem(Headers({"host": host_header}))

    assert problem("192.168.1.20:7860", "127.0.0.1") == FOREIGN_HOST  # loopback: its names only
    assert problem("192.168.1.20:7860", "0.0.0.0") is None
    assert problem(f"{socket.gethostname()}:7860", "0.0.0.0") is None
    assert problem("evil.example:7860", "0.0.0.0") == FOREIGN_HOST
    assert problem("[::1", "0.0.0.0") == FOREIGN_HOST  # does not parse


# -- Host and Origin ------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.nip.io", "[::2]"])
@pytest.mark.parametrize("target", ["/", "/health", "/config", "/gradio_api/info"])
def test_a_foreign_host_header_is_refused(strict_app: str, host: str, target: str):
    status, body = raw_get(strict_app, target, {"Host": host})
    assert (status, body.decode()) == (403, FOREIGN_HOST)


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]", ALLOWED, ALLOWED.upper()])
def test_own_and_allowed_host_names_are_served(strict_app: str, name: str):
    port = urlsplit(strict_app).port
    status, body = raw_get(strict_app, "/health", {"Host": f"{name}:{port}"})
    assert status == 200 and json.loads(body)["status"] == "ok"


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1:1", "http://localhost.evil"]
)
def test_a_request_from_a_foreign_web_page_is_refused(strict_app: str, origin: str):
    response = httpx.get(f"{strict_app}/config", headers={"Origin": origin})
    assert (response.status_code, response.text) == (403, FOREIGN_ORIGIN)
    # A cross-site POST that would start a reply: refused before Gradio sees it.
    response = httpx.post(
        f"{strict_app}/gradio_api/queue/join",
        headers={"Origin": origin},
        json={"data": [{"text": "hi", "files": []}], "fn_index": 0, "session_hash": "x"},
    )
    assert response.status_code == 403


def test_the_page_itself_is_served_with_its_own_origin(strict_app: str):
    response = httpx.get(f"{strict_app}/config", headers={"Origin": strict_app})
    assert response.status_code == 200


def test_monitoring_and_analytics_are_off(strict_app: str):
    for target in ("/monitoring", "/monitoring/summary", "/gradio_api/monitoring"):
        assert httpx.get(f"{strict_app}{target}").status_code in (403, 404)
    assert httpx.get(f"{strict_app}/config").json()["analytics_enabled"] is False


def test_file_routes_do_not_fetch_local_addresses(strict_app: str):
    # Server-side request forgery: the app fetching a URL on this machine for the requester.
    for target in (f"/gradio_api/file={strict_app}/health", f"/gradio_api/proxy={strict_app}/"):
        status, body = raw_get(strict_app, target)
        assert status != 200 and b'"status"' not in body, (target, body[:200])


# -- path traversal -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("private") / "secret.txt"
    path.write_text("SECRET-7f3a9c")
    return path


def traversal_targets(secret: Path) -> list[str]:
    absolute = str(secret)
    up = "../" * 12
    return [
        f"/gradio_api/file={absolute}",
        f"/gradio_api/file={quote(absolute, safe='')}",
        "/gradio_api/file=/etc/passwd",
        f"/gradio_api/file={up}etc/passwd",
        f"/gradio_api/file={up}{absolute.lstrip('/')}",
        "/gradio_api/file=" + "%2e%2e%2f" * 12 + "etc%2fpasswd",
        "/gradio_api/file=" + "%252e%252e%252f" * 12 + "etc%252fpasswd",
        "/gradio_api/file=" + "..%5c" * 12 + "etc%5cpasswd",
        "/gradio_api/file=//etc/passwd",
        "/gradio_api/file=file:///etc/passwd",
        "/gradio_api/file=launch.py",
        "/gradio_api/file=./app/config.py",
        f"/gradio_api/file/{up}etc/passwd",
        "/gradio_api/file/" + "%2e%2e/" * 12 + "etc/passwd",
        f"/static/{up}etc/passwd",
        "/static/" + "%2e%2e%2f" * 12 + "etc%2fpasswd",
        f"/assets/{up}etc/passwd",
        "/assets/" + "%2e%2e%2f" * 12 + "etc%2fpasswd",
        f"/svelte/{up}etc/passwd",
        f"/gradio_api/proxy=file://{absolute}",
    ]


def test_path_traversal_against_file_routes_is_refused(strict_app: str, secrets: Path):
    targets = traversal_targets(secrets)
    for target in targets:
        status, body = raw_get(strict_app, target)
        assert status != 200, (target, body[:200])
        assert b"SECRET-7f3a9c" not in body and b"root:" not in body, target
    still_serving(strict_app)


def test_the_data_folder_is_not_served_beyond_its_files(strict_app: str, image_file: Path):
    """Saved conversations' files may be fetched by whoever may use the page (it shows them);
    the database and anything else in the data folder may not."""
    client = Client(strict_app, verbose=False)
    conversation_id = client.predict(api_name="/new_conversation")
    client.predict(
        {"text": "Keep this", "files": [handle_file(image_file)]},
        conversation_id=conversation_id,
        max_new_tokens=16,
        api_name="/chat",
    )
    exported = json.loads(client.predict(conversation_id, "json", api_name="/export"))
    kept = Path(exported["messages"][0]["attachments"][0]["path"])
    data = kept.parents[2]  # <data>/files/<conversation>/<file>
    (data / "secret.txt").write_text("SECRET-7f3a9c")
    for private in (data / "secret.txt", *data.glob("*.db*")):
        for target in (
            f"/gradio_api/file={private}",
            f"/gradio_api/file={quote(str(private), safe='')}",
            f"/gradio_api/file={kept.parent}/../../{private.name}",
        ):
            status, body = raw_get(strict_app, target)
            assert status != 200 and b"SECRET-7f3a9c" not in body, target
            assert not body.startswith(b"SQLite format"), target
    assert any(data.glob("*.db")), "the database should be in the data folder"


# -- uploads --------------------------------------------------------------------------------------


def test_an_oversize_upload_is_refused(strict_app: str, tmp_path: Path):
    big = tmp_path / "big.png"
    photo(800, 800).save(big)  # about 1.9 MB of noise
    assert big.stat().st_size > MAX_FILE_MB * 1024 * 1024
    with big.open("rb") as file:
        response = httpx.post(f"{strict_app}/gradio_api/upload", files={"files": file})
    assert response.status_code == 413, response.text
    assert f"maximum allowed size of {MAX_FILE_MB * 1024 * 1024} bytes" in response.text
    with pytest.raises(Exception, match="exceeds the maximum file size of 1048576 bytes"):
        Client(strict_app, verbose=False).predict(
            {"text": "Look", "files": [handle_file(big)]}, api_name="/chat"
        )
    still_serving(strict_app)


def test_too_many_files_in_one_message_are_refused(strict_app: str, image_file: Path):
    files = [handle_file(image_file)] * (MAX_FILES + 1)
    with pytest.raises(
        Exception, match=rf"One message can carry at most {MAX_FILES} files; this one has 3\."
    ):
        Client(strict_app, verbose=False).predict({"text": "", "files": files}, api_name="/chat")
    still_serving(strict_app)


def test_a_renamed_executable_is_refused(strict_app: str, tmp_path: Path):
    fake = tmp_path / "holiday.png"
    fake.write_bytes(Path(sys.executable).resolve().read_bytes()[:65_536])
    client = Client(strict_app, verbose=False)
    with pytest.raises(
        Exception,
        match=r"holiday\.png is not an image, a PDF, a video, audio or a text file Loupe can use\.",
    ):
        client.predict({"text": "What is this?", "files": [handle_file(fake)]}, api_name="/chat")
    voice = tmp_path / "voice.wav"
    voice.write_bytes(fake.read_bytes())
    with pytest.raises(
        Exception, match=r"voice\.wav is not an image, a PDF, a video, audio or a text file"
    ):
        client.predict(handle_file(voice), api_name="/transcribe")
    with pytest.raises(
        Exception, match=r"holiday\.png is not an image, a PDF, a video, audio or a text file"
    ):
        client.predict(handle_file(fake), "brief", api_name="/describe")
    still_serving(strict_app)


# -- bad input through /chat ----------------------------------------------------------------------


def test_bad_input_through_chat_is_one_sentence_and_the_app_keeps_serving(
    strict_app: str, tmp_path: Path
):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(10_000, 10_000))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(b"RIFF\x24\x00\x01\x00WAVEfmt " + bytes(40))
    client = Client(strict_app, verbose=False)
    cases = [
        ({"text": "", "files": [handle_file(bomb)]}, r"bomb\.png has 100 megapixels"),
        ({"text": "", "files": [handle_file(cut)]}, r"cut\.wav is not an audio file Loupe"),
        ({"text": "x" * 200_000, "files": []}, r"This message is 200,000 characters long"),
    ]
    for message, sentence in cases:
        with pytest.raises(Exception, match=sentence) as refused:
            client.predict(message, api_name="/chat")
        assert "Traceback" not in str(refused.value)
    still_serving(strict_app)


def call_with_raw_json(url: str, api_name: str, data: list) -> str:
    """Call an endpoint with JSON as a browser may send it: lone surrogates escaped as \\ud800,
    which gradio_client cannot encode. The server's last message."""
    body = json.dumps({"data": data})  # ASCII, with escapes
    headers = {"Content-Type": "application/json"}
    event = httpx.post(f"{url}/gradio_api/call/{api_name}", content=body, headers=headers)
    event_id = event.json()["event_id"]
    with httpx.stream("GET", f"{url}/gradio_api/call/{api_name}/{event_id}", timeout=60) as stream:
        lines = [line for line in stream.iter_lines() if line]
    assert lines[-2] == "event: complete", lines[-4:]
    return lines[-1]


def test_lone_surrogates_and_nul_are_cleaned_and_kept(strict_app: str):
    client = Client(strict_app, verbose=False)
    conversation_id = client.predict(api_name="/new_conversation")
    message = {"text": "hi \ud800 there\x00 שלום 👋", "files": []}
    settings = ["", 1.0, 0.95, 64, 16, False, 280]
    call_with_raw_json(strict_app, "chat", [message, *settings, conversation_id])
    call_with_raw_json(strict_app, "edit", [conversation_id, 0, "again \udfff\x00", 16])
    exported = json.loads(client.predict(conversation_id, "json", api_name="/export"))
    assert exported["messages"][0]["text"] == "again \ufffd"
    assert exported["title"] == "again \ufffd"  # the title made from it follows the edit


# -- temporary files ------------------------------------------------------------------------------


# Ctrl+C closes the engine and Gradio's server, which deletes the uploads; on two cores busy with
# the rest of the suite that once took over 30 s.
CTRL_C_S = 90


def test_ctrl_c_stops_loupe_quietly_and_deletes_the_uploads(
    miniature: Path, image_file: Path, tmp_path: Path
):
    # Uploads in a folder of its own: another app's upload of the same file shares its path.
    folders = {"LOUPE_DATA_DIR": str(tmp_path / "data"), "GRADIO_TEMP_DIR": str(tmp_path / "up")}
    process, url = start_app("--demo", env=folders, own_group=True)
    try:
        health_when_loaded(process, url)
        with image_file.open("rb") as file:
            response = httpx.post(f"{url}/gradio_api/upload", files={"files": file})
        (uploaded,) = [Path(path) for path in response.json()]
        assert uploaded.is_file()
        # Ctrl+C in a terminal: the whole group, the model worker too, gets the interrupt.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=CTRL_C_S)
    finally:
        said = stop_app(process)
    assert not uploaded.exists()
    assert "Traceback" not in said and "restarting" not in said, said


def test_ordinary_refusals_through_the_api_are_one_log_line_each(
    strict_process: tuple[subprocess.Popen, str], image_file: Path, tmp_path: Path
):
    process, url = strict_process
    client = Client(url, verbose=False)
    gone = client.predict(api_name="/new_conversation")
    # Its page tree counts two pages and holds one: PDFium opens it, and cannot render page 2.
    unrenderable = tmp_path / "unrenderable.pdf"
    pages = b"<< /Type /Pages /Kids [3 0 R] /Count 2 >>"
    unrenderable.write_bytes(handmade_pdf([ONE_PAGE[0], pages, ONE_PAGE[2]]))
    pdf_message = {"text": "Read it", "files": [handle_file(unrenderable)]}
    refusals = {
        "Page 2 of unrenderable.pdf could not be rendered": lambda: client.predict(
            pdf_message, api_name="/chat"
        ),
        "Page 2 of unrenderable.pdf could not be rendered.": lambda: client.predict(
            pdf_message,
            conversation_id=client.predict(api_name="/new_conversation"),
            api_name="/chat",
        ),
        "This conversation no longer exists": lambda: client.predict(
            "no-such-id", "markdown", api_name="/export"
        ),
        "The level must be one of": lambda: client.predict(
            handle_file(image_file), "poem", api_name="/describe"
        ),
        "Message 5 is not one of your messages": lambda: client.predict(
            gone, 5, "Hello", api_name="/edit"
        ),
    }
    before = console_text(process)
    for sentence, call in refusals.items():
        with pytest.raises(AppError, match=sentence):
            call()
    logged = console_text(process)[len(before) :]
    assert "Traceback" not in logged, logged
    lines = [line for line in logged.splitlines() if line.strip()]
    assert len(lines) == len(refusals) and all(line.startswith("Refused: ") for line in lines)


def raw_call_error(url: str, api_name: str, data: list) -> str:
    """Call an endpoint over plain HTTP, as any program may (gradio_client uploads every file it
    is given first); the error it answers with."""
    event = httpx.post(f"{url}/gradio_api/call/{api_name}", json={"data": data})
    event_id = event.json()["event_id"]
    with httpx.stream("GET", f"{url}/gradio_api/call/{api_name}/{event_id}", timeout=60) as stream:
        lines = [line for line in stream.iter_lines() if line]
    assert lines[-2] == "event: error", lines[-4:]
    return json.loads(lines[-1].removeprefix("data: "))["error"]


def test_gradios_own_checks_name_the_input_in_one_log_line(
    strict_process: tuple[subprocess.Popen, str],
):
    process, url = strict_process
    client = Client(url, verbose=False)
    hello = {"text": "Hello", "files": []}
    not_uploaded = {"path": str(ROOT / "README.md"), "meta": {"_type": "gradio.FileData"}}
    settings = ["", 1.0, 0.95, 64, 16, False, 280]
    before = console_text(process)
    with pytest.raises(
        AppError, match=r"^The temperature input must be a number from 0 to 2; got -1\.$"
    ):
        client.predict(hello, temperature=-1, api_name="/chat")
    with pytest.raises(
        AppError, match=r"^The max_new_tokens input must be a number from 16 to 4096"
    ):
        client.predict(hello, max_new_tokens="many", api_name="/chat")
    with pytest.raises(AppError, match=r"^The image_tokens input must be one of 0, 70, 140, 280"):
        client.predict(hello, image_tokens=5, api_name="/chat")
    message = {"text": "Read it", "files": [not_uploaded]}
    assert raw_call_error(url, "chat", [message, *settings, ""]) == (
        "The message input names a file that was not uploaded to Loupe; upload it first "
        "(gradio_client's handle_file does)."
    )
    assert raw_call_error(url, "describe", [not_uploaded, "brief", ""]).startswith(
        "The image input names a file that was not uploaded"
    )
    # The named endpoints Gradio checks nothing for, refused before anything is changed.
    conversation = client.predict(api_name="/new_conversation")
    client.predict(hello, max_new_tokens=16, conversation_id=conversation, api_name="/chat")
    kept = client.predict(conversation, "json", api_name="/export")
    with pytest.raises(AppError, match=r"^The message_index input must be a whole number of at"):
        client.predict(conversation, "first", "Hi", api_name="/edit")
    with pytest.raises(AppError, match=r"^The max_new_tokens input must be a whole number of at"):
        client.predict(conversation, -5, api_name="/regenerate")
    with pytest.raises(AppError, match=r"^The max_new_tokens input must be a whole number of at"):
        client.predict(conversation, 0, "Hi", 0.5, api_name="/edit")
    assert client.predict(conversation, "json", api_name="/export") == kept
    logged = console_text(process)[len(before) :]
    assert "Traceback" not in logged, logged
    lines = [line for line in logged.splitlines() if line.strip()]
    assert len(lines) == 8 and all(line.startswith("Refused: The ") for line in lines), lines
