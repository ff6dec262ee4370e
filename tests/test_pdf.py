"""PDFs: pages rendered as labelled images, the page limit and named pages, one sentence for a
PDF that cannot be read, kept with the conversation and exported; through the page's intake,
the engine's processor, gradio_client and /v1.

The PDFs are made for real: Chromium prints HTML with real text (`page.pdf()`), PIL writes an
image-only PDF as scanners do, and a PDF with a password and one without pages are written out
by hand (pypdfium2 cannot encrypt, and no encrypting tool is installed).
"""

from __future__ import annotations

import base64
import io
import json
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from app.config import AppConfig, Limits
from app.history import Conversation, History, StoredMessage, export_json, export_markdown
from app.intake import pdf
from app.intake.files import file_kind
from app.intake.message import Intake
from app.intake.pdf import PAGE_PIXELS
from app.intake.pdf_pages import choose_pages, page_list, requested_pages
from app.intake.probe import MediaError
from app.intake.speech import Speech
from app.page.chat_events import ChatHandlers
from app.page.display import shown_conversation
from app.page.voice import SEND_AUDIO, Voice
from app.tasks.describe import is_description
from bench.samples import photo
from model import GenerationOptions, SpeechRecognizer
from model.prompts import build_inputs
from tests.decoding import load_attachments
from tests.test_fuzz import FUZZ, mutated
from tests.test_media import PeakMemory

LIMITS = Limits()
PAGES = 30
# Each page of the 30-page report starts with a black bar 5 mm wide per page number, so a page
# image says which page it is: bar width / 5 mm.
BAR_MM = 5
A4_WIDTH_MM = 210
# A book whose text layer is longer than a message's PDFs may give: 60 pages of about 580
# characters each.
BOOK_PAGES = 60
BOOK_SENTENCES = 12
BOOK_PAGE_CHARS = 600
# The settings panel: system prompt, temperature, top-p, top-k, max new tokens, thinking, detail.
SETTINGS = ("", 1.0, 0.95, 64, 8, False, 280)


def chromium_pdf(browser, html: str, path: Path) -> Path:
    """`html` printed to A4 by Chromium, without margins, backgrounds included."""
    page = browser.new_page()
    try:
        page.set_content(f"<html><body style='margin:0'>{html}</body></html>")
        margins = dict.fromkeys(("top", "bottom", "left", "right"), "0")
        path.write_bytes(page.pdf(format="A4", margin=margins, print_background=True))
    finally:
        page.close()
    return path


def chat_handlers(engine, data: Path) -> ChatHandlers:
    """The page's handlers on `engine`, keeping conversations in `data`."""
    return ChatHandlers(engine, Voice(SpeechRecognizer()), History(data), AppConfig())


def handmade_pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF of these objects (numbered from 1; 1 is the catalogue) with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        trailer,
        xref,
    )
    return bytes(out)


ONE_PAGE = [
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>",
]
# RC4 with a user password: /U holds no key that the empty password gives.
ENCRYPTION = b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -4 >>" % (b"ab" * 32, b"cd" * 32)
FILE_ID = b"/ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>] "


@pytest.fixture(scope="session")
def pdfs(tmp_path_factory: pytest.TempPathFactory, browser) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pdfs")
    pages = "".join(
        f'<section style="break-after: page"><div style="height: 20mm; width: {n * BAR_MM}mm;'
        f' background: #000"></div><h1>Chapter {n}</h1><p>The harbour report, part {n}: the'
        " ferry leaves at nine and returns at five.</p></section>"
        for n in range(1, PAGES + 1)
    )
    files = {
        "report": chromium_pdf(browser, pages, folder / "report.pdf"),
        "letter": chromium_pdf(
            browser,
            "<h1 style='font-size: 40pt'>Invoice 1234</h1><p>Total due: 56 euros.</p>",
            folder / "letter.pdf",
        ),
    }
    book = "".join(
        f'<section style="break-after: page"><h1>Part {n}</h1><p>'
        + " ".join([f"Page {n} tells how the ferry crossed the bay."] * BOOK_SENTENCES)
        + "</p></section>"
        for n in range(1, BOOK_PAGES + 1)
    )
    files["book"] = chromium_pdf(browser, book, folder / "book.pdf")
    scans = [scanned_page(seed) for seed in range(3)]
    scans[0].save(folder / "scan.pdf", "PDF", save_all=True, append_images=scans[1:])
    files["scan"] = folder / "scan.pdf"
    report = files["report"].read_bytes()
    written = {
        "encrypted": handmade_pdf([*ONE_PAGE, ENCRYPTION], b"/Encrypt 4 0 R " + FILE_ID),
        "no_pages": handmade_pdf([ONE_PAGE[0], b"<< /Type /Pages /Kids [] /Count 0 >>"]),
        "cut": report[: len(report) // 2],
        "fake": b"\x00\x01Quarterly figures: not a PDF at all, but binary data named like one.",
        "blank": handmade_pdf(ONE_PAGE),
    }
    for name, data in written.items():
        files[name] = folder / f"{name}.pdf"
        files[name].write_bytes(data)
    return files


def bomb_pdf(path: Path, operator: bytes, inflated_mb: int, pages: int = 1) -> Path:
    """A decompression bomb: a PDF whose `pages` share one content stream, `operator` repeated
    to `inflated_mb` megabytes and deflated to about a thousandth of that (never held whole)."""
    deflate = zlib.compressobj(9)
    chunk = operator * (65_536 // len(operator))
    repeats = inflated_mb * 1024 * 1024 // len(chunk)
    stream = b"".join(deflate.compress(chunk) for _ in range(repeats)) + deflate.flush()
    kids = b" ".join(b"%d 0 R" % (4 + page) for page in range(pages))
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R >>"
    objects = [
        ONE_PAGE[0],
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
        *[page] * pages,
    ]
    path.write_bytes(handmade_pdf(objects))
    return path


def scanned_page(seed: int) -> Image.Image:
    """A page as a scanner gives it: an off-white sheet with a dark block where each page's
    text would be, placed differently on each page."""
    pixels = np.full((560, 400, 3), 235, np.uint8)
    top = 60 + 150 * seed
    pixels[top : top + 120, 40:360] = 30
    return Image.fromarray(pixels)


def page_number(image: Image.Image) -> int:
    """Which page of the report an image shows, from the width of its black bar."""
    band = np.asarray(image.convert("L"))[image.height // 100 : image.height // 30]
    return round((band < 128).mean() * A4_WIDTH_MM / BAR_MM)


def intake() -> Intake:
    return Intake(LIMITS, Speech(SpeechRecognizer()), is_description)


def stored(text: str, *paths: Path):
    taker = intake()
    files = taker.message_files({"text": text, "files": [str(path) for path in paths]})
    return taker.stored_user_message(text, files)


def model_message(message) -> object:
    from app.history import Conversation

    [sent] = intake().model_messages(Conversation("", "", 0, 0, (message,)), "")
    return sent


# -- choosing pages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, ranges",
    [
        ("Summarise pages 3-5", [(3, 5)]),
        ("what is on page 2?", [(2, 2)]),
        ("Compare pages 1, 4 and 7.", [(1, 1), (4, 4), (7, 7)]),
        ("Pages 1, 4, and 7", [(1, 1), (4, 4), (7, 7)]),
        ("see p. 3", [(3, 3)]),
        ("pp. 3–5, 8", [(3, 5), (8, 8)]),
        ("page 2 and page 9", [(2, 2), (9, 9)]),
        ("pages 12 to 14", [(12, 14)]),
        ("page 10-8", [(8, 10)]),
        ("What does it say?", None),
        ("a 3 pages long letter", None),
        ("keep it up. 4 more", None),
    ],
)
def test_pages_named_in_a_message(text: str, ranges):
    assert requested_pages(text) == ranges


def test_pages_are_written_as_people_write_them():
    assert page_list([1, 2, 3, 7, 9, 10]) == "1-3, 7 and 9-10"
    assert choose_pages("a.pdf", 30, None, 10).caption == "Pages 1-10 of 30"
    assert choose_pages("a.pdf", 30, [(4, 4)], 10).caption == "Page 4 of 30"
    with pytest.raises(MediaError, match=r"^a\.pdf has 30 pages, so it has no page 31\.$"):
        choose_pages("a.pdf", 30, [(29, 31)], 10)
    with pytest.raises(MediaError, match=r"^a\.pdf has one page, so it has no page 0\.$"):
        choose_pages("a.pdf", 1, [(0, 1)], 10)


# -- intake -----------------------------------------------------------------------------------


def test_a_chromium_pdf_is_a_pdf_by_its_content_and_renders_its_text(pdfs, tmp_path: Path):
    renamed = tmp_path / "invoice.png"  # the name says image; the content says PDF
    renamed.write_bytes(pdfs["letter"].read_bytes())
    assert file_kind(renamed, LIMITS) == "pdf"
    message = stored("What is the total?", renamed)
    [attachment] = message.attachments
    assert (attachment.kind, attachment.caption) == ("pdf", "Page 1 of 1, with text")
    sent = model_message(message)
    # The page's text layer comes too, exactly as the PDF holds it.
    assert "Page 1:\n```\nInvoice 1234\nTotal due: 56 euros.\n```\n\nWhat is" in sent.text
    [image] = sent.images
    # At the largest image budget's size (A4: about 1351x1911), not more.
    assert 0.95 * PAGE_PIXELS <= image.width * image.height <= 1.01 * PAGE_PIXELS
    assert abs(image.width / image.height - 210 / 297) < 0.01
    ink = np.asarray(image.convert("L")) < 128
    assert 0.001 < ink.mean() < 0.2  # the heading and the line of text, on white


def test_a_30_page_pdf_gives_10_pages_labelled_and_the_text_of_all(pdfs, processor):
    message = stored("Summarise this report.", pdfs["report"])
    assert message.attachments[0].caption == "Pages 1-10 of 30, and the text of pages 1-30"
    sent = model_message(message)
    assert [page_number(image) for image in sent.images] == list(range(1, 11))
    assert sent.text.startswith("report.pdf is a PDF of 30 pages; images 1 to 10 are its pages")
    assert "Image 1: page 1 of 30.\n" in sent.text and "Image 10: page 10 of 30." in sent.text
    layer = "The text of report.pdf, as the PDF holds it; pages 11-30 without an image:"
    assert sent.text.index("Image 10: page 10 of 30.") < sent.text.index(layer)
    assert "Page 30:\n```\nChapter 30\nThe harbour report, part 30: the ferry" in sent.text
    assert sent.text.endswith("returns at five.\n```\n\nSummarise this report.")
    inputs = build_inputs(processor, [sent], GenerationOptions(image_tokens=70))
    begin_image = processor.tokenizer.convert_tokens_to_ids("<|image>")
    assert int((inputs["input_ids"] == begin_image).sum()) == 10  # ten images reach the model
    assert intake().left_out_note(message) == (
        "report.pdf: pages 1-10 of 30 were read as images, and pages 11-30 as text only."
    )


def test_a_long_pdf_gives_text_up_to_half_a_request_and_follow_ups_still_fit(pdfs, processor):
    budget = LIMITS.max_request_chars // 2
    message = stored("Summarise this book.", pdfs["book"])
    caption = message.attachments[0].caption
    assert caption.startswith("Pages 1-10 of 60, and the text of pages 1-")
    last = int(caption.rsplit("-", 1)[1])
    assert 15 < last < 30  # whole pages: those that fit
    sent = model_message(message)
    layer = sent.text.split("Page 1:\n", 1)[1]
    assert f"Page {last}:\n" in layer and f"Page {last + 1}:\n" not in layer
    assert budget - BOOK_PAGE_CHARS < len(layer) < budget + 600  # the text, fences and headings
    note = intake().left_out_note(message)
    assert note == (
        f"report.pdf: pages 1-10 of 60 were read as images, and pages 11-{last} as text only. "
        "Loupe reads at most 10 pages of a message as images, and text up to 10,000 characters:"
        ' name the pages you want, as in "pages 11-20".'
    ).replace("report.pdf", "book.pdf")
    # A follow-up question is sent with the book's turn: it fits beside the text.
    conversation = Conversation("", "", 0, 0, (message, StoredMessage("assistant", "A book.")))
    follow_up = StoredMessage("user", "Who wrote it? " * 300)
    conversation = replace(conversation, messages=(*conversation.messages, follow_up))
    sent_turns, left_out = intake().sent_turns(conversation, "")
    assert left_out == 0 and len(sent_turns.messages) == 3
    # Pages named past the image limit come as text.
    named = stored("What happens on pages 41-60?", pdfs["book"])
    assert named.attachments[0].caption.startswith("Pages 41-50 of 60, and the text of pages 41-")
    assert "pages 51-" in intake().left_out_note(named)


def test_named_pages_are_honoured(pdfs):
    message = stored("What changes on pages 3-5?", pdfs["report"])
    assert message.attachments[0].caption == "Pages 3-5 of 30, with text"
    sent = model_message(message)
    assert [page_number(image) for image in sent.images] == [3, 4, 5]
    assert "Image 1: page 3 of 30.\nImage 2: page 4 of 30.\nImage 3: page 5 of 30." in sent.text
    assert intake().left_out_note(message) == ""  # the pages asked for were all read
    scattered = model_message(stored("Compare pages 2, 17 and 30", pdfs["report"]))
    assert [page_number(image) for image in scattered.images] == [2, 17, 30]
    with pytest.raises(MediaError, match=r"^report\.pdf has 30 pages, so it has no page 31\.$"):
        stored("And page 31?", pdfs["report"])


def test_an_image_only_pdf_gives_its_scanned_pages(pdfs):
    message = stored("Read this scan", pdfs["scan"])
    assert message.attachments[0].caption == "Pages 1-3 of 3"
    assert intake().left_out_note(message) == ""
    images = model_message(message).images
    assert len(images) == 3
    for seed, image in enumerate(images):
        # Compared small: the PDF holds the scan as a JPEG.
        small = [picture.resize((20, 28), Image.BOX) for picture in (image, scanned_page(seed))]
        difference = np.abs(np.subtract(*(np.asarray(p, float) for p in small))).mean()
        assert difference < 20, (seed, difference)


def test_the_page_limit_counts_every_pdf_of_a_message(pdfs):
    message = stored("Both, please", pdfs["scan"], pdfs["report"], pdfs["letter"])
    captions = [attachment.caption for attachment in message.attachments]
    assert captions == [
        "Pages 1-3 of 3",  # a scan: no text layer
        "Pages 1-7 of 30, and the text of pages 1-30",
        "No pages of 1 read: the message's page limit was used up, and the text of page 1",
    ]
    sent = model_message(message)
    assert len(sent.images) == 10
    assert "letter.pdf is a PDF of 1 page; none of its pages are shown." in sent.text
    assert "The text of letter.pdf, as the PDF holds it; page 1 without an image:" in sent.text
    assert intake().left_out_note(message) == (
        "report.pdf: pages 1-7 of 30 were read as images, and pages 8-30 as text only; "
        "letter.pdf: page 1 of 1 was read as text only."
    )


@pytest.mark.parametrize(
    "name, sentence",
    [
        ("encrypted", "encrypted.pdf is protected by a password, so Loupe cannot open it."),
        ("no_pages", "no_pages.pdf has no pages."),
        ("cut", "cut.pdf is damaged or not a PDF Loupe can read."),
        ("fake", "fake.pdf is not an image, a PDF, a video, audio or a text file Loupe can use."),
    ],
)
def test_a_pdf_that_cannot_be_read_gives_one_sentence(pdfs, name: str, sentence: str):
    with pytest.raises(MediaError) as refused:
        stored("What is in it?", pdfs[name])
    assert str(refused.value) == sentence


def test_a_blank_page_is_still_a_page(pdfs):
    [image] = model_message(stored("Anything here?", pdfs["blank"])).images
    assert np.asarray(image).min() == 255  # white, and 2:1 like its page
    assert abs(image.width / image.height - 2) < 0.01


def test_a_described_pdf_is_described_page_by_page(pdfs):
    from app.tasks.describe import level_prompt

    taker = intake()
    files = taker.message_files({"text": "", "files": [str(pdfs["report"])]})
    message = taker.stored_user_message(level_prompt("read_text"), files, pages_from="page 9")
    sent = model_message(message)
    assert [page_number(image) for image in sent.images] == [9]
    assert "one at a time, in order, each under a heading with its page number" in sent.text
    assert sent.text.endswith(level_prompt("read_text"))


# -- decompression bombs ----------------------------------------------------------------------


def test_a_pdf_bomb_is_refused_by_its_first_page_and_the_app_memory_does_not_move(tmp_path: Path):
    # Three pages share 40 MB of "fill a square" (40 KB deflated). Drawn in the app, each page
    # took it to 1.1 GB more and 7 s of CPU.
    bomb = bomb_pdf(tmp_path / "report.pdf", b"0 0 1 1 re f\n", 40, pages=3)
    assert bomb.stat().st_size < 100_000
    started = time.monotonic()
    with PeakMemory() as memory, pytest.raises(MediaError) as refused:
        stored("Summarise this report.", bomb)  # refused before it is kept
    assert str(refused.value) == (
        "Page 1 of report.pdf is too large to render: it would take more than 512 MB of memory."
    )
    assert memory.grown_mb < 50, memory.grown_mb
    assert time.monotonic() - started < 20  # one page's worth, not three
    again = time.monotonic()
    with pytest.raises(MediaError, match=r"^Page 1 of report\.pdf is too large to render"):
        stored("And now?", bomb)  # sent again
    assert time.monotonic() - again < 1  # the refusal was kept, not drawn again


def test_a_page_that_takes_too_long_is_stopped_at_its_time_limit(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(pdf, "PAGE_CPU_S", 1)
    # 1.5 KB: a form drawing a form ten times, five deep, the last filling the page: 10,000
    # fills, over 10 s of CPU but little memory.
    forms = [
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 200 100] /Length 59"
        b" /Resources << /XObject << /F %d 0 R >> >> >>\nstream\n%s\nendstream"
        % (6 + depth, b" ".join([b"/F Do"] * 10))
        for depth in range(4)
    ]
    objects = [
        *ONE_PAGE[:2],
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /Contents 4 0 R"
        b" /Resources << /XObject << /F 5 0 R >> >> >>",
        b"<< /Length 5 >>\nstream\n/F Do\nendstream",
        *forms,
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 200 100] /Length 16 >>\nstream\n"
        b"0 0 200 100 re f\nendstream",
    ]
    slow = tmp_path / "slow.pdf"
    slow.write_bytes(handmade_pdf(objects))
    started = time.monotonic()
    with pytest.raises(MediaError) as refused:
        load_attachments([str(slow)], LIMITS)
    assert str(refused.value) == "Page 1 of slow.pdf takes too long to render: more than 1 s."
    assert time.monotonic() - started < 15


# -- fuzzing ----------------------------------------------------------------------------------


def _pdf_seeds() -> list[bytes]:
    image_only = io.BytesIO()
    photo(24, 16, seed=1).save(image_only, "PDF")
    text_page = [
        *ONE_PAGE[:2],
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /Contents 4 0 R"
        b" /Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >>"
        b" >> >>",
        b"<< /Length 44 >>\nstream\nBT /F1 24 Tf 10 40 Td (Hello PDF) Tj ET\nendstream",
    ]
    return [
        image_only.getvalue(),
        handmade_pdf(ONE_PAGE),
        handmade_pdf(text_page),
        handmade_pdf([*ONE_PAGE, ENCRYPTION], b"/Encrypt 4 0 R " + FILE_ID),
    ]


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048).map(b"%PDF-1.7\n".__add__), mutated(_pdf_seeds())))
def test_pdf_bytes_give_page_images_or_one_sentence(tmp_path: Path, data: bytes):
    path = tmp_path / "upload.pdf"
    path.write_bytes(data)
    try:
        file_kind(path, LIMITS)
        images, audio = load_attachments([str(path)], LIMITS)
    except MediaError as exc:
        message = str(exc)
        assert message.endswith(".") and "\n" not in message and "upload.pdf" in message
        return
    assert not audio
    for image in images:
        assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
        assert image.width * image.height <= PAGE_PIXELS * 1.01


# -- kept, shown, exported; through the handlers and the engine ------------------------------


def test_a_pdf_is_kept_shown_exported_and_reopened(engine, pdfs, tmp_path: Path):
    from bench.serving import wait_until_ready

    wait_until_ready(engine)
    data = tmp_path / "data"
    handlers = chat_handlers(engine, data)
    value = {"text": "Summarise pages 3-5, please.", "files": [str(pdfs["report"])]}
    updates = list(handlers.respond(value, "", SEND_AUDIO, *SETTINGS))
    shown, _, conversation_id, *_ = updates[-2]
    assert shown[0]["content"]["alt_text"] == "PDF you sent: report.pdf"
    assert shown[1]["content"] == "Pages 3-5 of 30, with text"  # the caption: what was read
    assert not shown[-1]["content"].startswith("*report.pdf")  # all it asked for was read

    reopened = History(data)  # as after a restart
    conversation = reopened.get(conversation_id)
    question, answer = conversation.messages
    assert Path(question.attachments[0].path).read_bytes() == pdfs["report"].read_bytes()
    assert answer.status == "complete" and not answer.text.startswith("*report.pdf")
    reopened_file = shown_conversation(conversation)[0][0]["content"]["file"]
    assert reopened_file["path"].endswith(".pdf") and reopened_file["orig_name"] == "report.pdf"
    markdown = export_markdown(conversation)
    assert "[📄 report.pdf](file://" in markdown and "> Pages 3-5 of 30, with text" in markdown
    [kept] = json.loads(export_json(conversation))["messages"][0]["attachments"]
    assert (kept["kind"], kept["name"]) == ("pdf", "report.pdf")
    assert kept["caption"] == "Pages 3-5 of 30, with text"
    sent = handlers.intake.model_messages(conversation, "")[0]
    assert [page_number(image) for image in sent.images] == [3, 4, 5]
    assert "Page 5:\n```\nChapter 5\n" in sent.text and "Page 6:" not in sent.text

    # The follow-up question sees the same pages again, and its reply has no note.
    follow = {"text": "And the ferry times?", "files": []}
    list(handlers.respond(follow, conversation_id, SEND_AUDIO, *SETTINGS))
    *_, last = handlers.history.get(conversation_id).messages
    assert not last.text.startswith("*report.pdf")


def test_a_broken_pdf_loses_nothing(engine, pdfs, tmp_path: Path):
    handlers = chat_handlers(engine, tmp_path / "data")
    value = {"text": "Read this", "files": [str(pdfs["cut"])]}
    [(_, box, conversation_id, *_)] = list(handlers.respond(value, "", SEND_AUDIO, *SETTINGS))
    assert box == value and conversation_id == "" and handlers.history.list() == []


# -- gradio_client and /v1 against the demo app -------------------------------------------------


def test_the_chat_api_takes_a_pdf(demo_app, pdfs):
    from gradio_client import Client, handle_file

    url, _ = demo_app
    client = Client(url, verbose=False)
    message = {"text": "What is this report about?", "files": [handle_file(pdfs["report"])]}
    answer = client.predict(message, max_new_tokens=16, api_name="/chat")
    assert answer.startswith("*report.pdf: pages 1-10 of 30 were read")
    with pytest.raises(Exception, match="encrypted.pdf is protected by a password"):
        message = {"text": "Open it", "files": [handle_file(pdfs["encrypted"])]}
        client.predict(message, max_new_tokens=16, api_name="/chat")


def _file_part(path: Path) -> dict:
    data = base64.b64encode(path.read_bytes()).decode()
    return {
        "type": "file",
        "file": {"file_data": f"data:application/pdf;base64,{data}", "filename": path.name},
    }


def test_v1_takes_a_pdf_as_a_file_part(demo_app, pdfs):
    import openai

    url, _ = demo_app
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
    question = {"type": "text", "text": "Summarise it"}
    completion = client.chat.completions.create(
        model="",
        messages=[{"role": "user", "content": [question, _file_part(pdfs["report"])]}],
        max_tokens=4,
    )
    assert completion.choices[0].message.content.startswith(
        "*report.pdf: pages 1-10 of 30 were read as images, and pages 11-30 as text only.*"
    )
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="",
            messages=[{"role": "user", "content": [_file_part(pdfs["encrypted"])]}],
            max_tokens=4,
        )
    assert "content[0] is protected by a password" in json.dumps(refused.value.body)
    with pytest.raises(openai.BadRequestError, match="base64 data URLs"):
        url_part = {"type": "file", "file": {"file_data": "https://example.com/a.pdf"}}
        client.chat.completions.create(
            model="", messages=[{"role": "user", "content": [url_part]}], max_tokens=4
        )


def test_v1_bodies_with_a_file_part_become_labelled_pages(pdfs):
    from app.v1.serving import ApiError, chat_call

    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is on page 30?"},
                    _file_part(pdfs["report"]),
                ],
            }
        ]
    }
    call = chat_call(body, LIMITS)
    [sent] = call.request.messages
    assert [page_number(image) for image in sent.images] == [30]
    assert sent.text.startswith("report.pdf is a PDF of 30 pages; image 1 is one of its pages")
    assert "Image 1: page 30 of 30.\n\nThe text of report.pdf, as the PDF holds it:" in sent.text
    assert sent.text.endswith(
        "Chapter 30\nThe harbour report, part 30: the ferry leaves at nine"
        " and returns at five.\n```\n\nWhat is on page 30?"
    )
    assert call.note == ""  # the page asked for was read
    body["messages"][0]["content"][0]["text"] = "And page 31?"
    with pytest.raises(ApiError, match="report.pdf has 30 pages, so it has no page 31"):
        chat_call(body, LIMITS)


def test_the_page_sends_a_pdf_and_shows_it_with_the_note(page, demo_app, pdfs):
    from playwright.sync_api import expect

    from tests.test_page import send_with

    send_with(page, demo_app[0], pdfs["report"], "Summarise this report")
    chat = page.locator("#chat")
    expect(chat.locator("a", has_text="report.pdf").first).to_be_visible()  # a file link
    expect(chat.get_by_text("Pages 1-10 of 30, and the text of pages 1-30")).to_be_visible()
    expect(page.locator("#chat .bot").last).to_contain_text(
        "report.pdf: pages 1-10 of 30 were read as images, and pages 11-30 as text only."
    )


def test_describe_mode_reads_the_named_pages_one_at_a_time(engine, pdfs, tmp_path: Path):
    from app.tasks.describe import AI_NOTICE

    handlers = chat_handlers(engine, tmp_path / "data")
    value = {"text": "pages 2-3", "files": [str(pdfs["report"])]}
    updates = list(handlers.describe_page(value, "", "read_text", *SETTINGS))
    shown, box, conversation_id, *_ = updates[0]
    assert box == {"text": "pages 2-3", "files": []}  # the typed text waits in the box
    assert shown[1]["content"] == "Pages 2-3 of 30, with text"
    assert shown[2]["content"] == "Describe this PDF: Read all text"
    conversation = handlers.history.get(conversation_id)
    assert conversation.title == "Read all text: report.pdf"
    answer = conversation.messages[-1].text
    assert answer.startswith(f"{AI_NOTICE} *report.pdf: pages 2-3 of 30 were read.")
    sent = handlers.intake.model_messages(conversation, "")[0]
    assert [page_number(image) for image in sent.images] == [2, 3]
    assert "one at a time, in order, each under a heading with its page number" in sent.text
