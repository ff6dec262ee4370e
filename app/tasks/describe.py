"""Image descriptions at five levels, for people who cannot see the image, and a content check:
one prompt each.

A description is an ordinary conversation turn: the level's prompt is the person's message (with
the image), so follow-up questions about the same image simply continue the conversation.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

from PIL import Image

from model import AUTO_IMAGE_TOKENS, ChatRequest, GenerationOptions, Message

from ..tasks import moderation

AI_NOTICE = "AI description, may be wrong:"


@dataclass(frozen=True)
class Level:
    """A description level: its name on the page, the prompt that asks for it, and the image
    budget it asks Auto for (0: what the image needs)."""

    label: str
    prompt: str
    image_tokens: int = 0


# Said first in every level's prompt: who the description is for, and what never to do.
FOR_WHOM = (
    "You are describing an image for a person who is blind or has low vision and cannot see it. "
    "Be accurate and plain. Describe only what you can see: never guess at names, feelings, or "
    "text you cannot read, and say so when something is unclear. Do not begin with "
    "'This image shows' or 'The image is'."
)
ALT_TEXT_MAX_CHARS = 125  # what screen readers read comfortably in one go
# The Alt text level's answer, in the form its prompt asks for (read back by alt_text_of): a
# decorative image's alt text is empty, an informative one's a line, a complex one's a line and
# a long description. Printable text only: nothing an alt attribute cannot hold.
ALT_TEXT_GRAMMAR = rf"""%llguidance {{}}
start: decorative | informative | complex
decorative: "Kind: decorative\nAlt text: "
informative: "Kind: informative\nAlt text: " ALT
complex: "Kind: complex\nAlt text: " ALT "\nLong description: " LONG
ALT: /[^\x00-\x1f\x7f-\x9f]{{1,{ALT_TEXT_MAX_CHARS}}}/
LONG: /[^\x00-\x08\x0b-\x1f\x7f-\x9f]+/
"""
LEVELS: dict[str, Level] = {
    "brief": Level(
        "Brief",
        f"{FOR_WHOM}\n\n"
        "Describe it in one or two sentences: what it is, and the one thing that matters most "
        "in it. If it is mostly text, say what kind of text it is and give its gist.",
    ),
    "detailed": Level(
        "Detailed",
        f"{FOR_WHOM}\n\n"
        "Describe it in detail, the most important things first:\n"
        "1. What kind of image it is (photo, screenshot, drawing, document, ...) and its subject.\n"
        "2. The people, animals and objects: what they look like, what they are doing, and "
        "where they are (left, right, in front, behind).\n"
        "3. The setting, colours and light.\n"
        "4. Any text, quoted exactly.\n"
        "5. The mood or purpose, if it is clear.\n"
        "Write short paragraphs without headings. Name a person only if the name is written in "
        "the image.",
    ),
    "alt_text": Level(
        "Alt text",
        f"{FOR_WHOM}\n\n"
        "Write alt text for this image, for the alt attribute of an HTML img element. First "
        "decide which kind of image it is, as in the W3C alt decision tree:\n"
        "- decorative: it adds no information (an ornament, a border, a background texture, a "
        "picture there only for the look). Its alt text is empty.\n"
        "- informative: a photo, drawing, icon, logo or short text that gives one idea. Its alt "
        f"text says that idea in one sentence of at most {ALT_TEXT_MAX_CHARS} characters. If the "
        "image is mostly text, the alt text is that text. If it is an icon or a button, the alt "
        "text says what it does, not what it looks like.\n"
        "- complex: a chart, graph, diagram, map or infographic whose information does not fit "
        f"in one sentence. Its alt text, at most {ALT_TEXT_MAX_CHARS} characters, says what it "
        "is and its main point; a long description then gives all of its information.\n"
        "Do not start the alt text with 'image of' or 'picture of'; mention the kind of image "
        "only when it matters (a photo, a screenshot, a painting).\n"
        "Answer in exactly this form, with nothing before or after it:\n"
        "Kind: decorative, informative or complex\n"
        "Alt text: the alt text, or nothing for a decorative image\n"
        "Long description: for a complex image only, all of its information",
    ),
    "read_text": Level(
        "Read all text",
        f"{FOR_WHOM}\n\n"
        "Read out all the text in this image, word for word, exactly as written, in reading "
        "order: for a page, top to bottom and column by column; for a screenshot, the window "
        "title, then menus and buttons, then the content. Keep its line breaks and paragraphs. "
        "Give lists as lists and tables row by row, with ' | ' between cells. Do not correct, "
        "translate, summarise or explain anything. Put [?] right after any word you are unsure "
        "of, and write [unreadable] where text cannot be read at all. If there is no text, "
        "answer only: No text found.",
        image_tokens=1120,  # every word, the smallest too
    ),
    "diagram": Level(
        "Diagram or chart",
        f"{FOR_WHOM}\n\n"
        "This image is a diagram, chart, graph, map or table. Describe it so that the person "
        "can use its information:\n"
        "1. What kind it is, and its title.\n"
        "2. Its structure: the axes with their labels, units and ranges; the legend; the series, "
        "parts or boxes and how they connect (for a flow chart, follow the arrows from the "
        "start).\n"
        "3. The data: every value you can read, grouped by series, as a short list or table. "
        "Say when a value is estimated from where a mark sits.\n"
        "4. The main trend, comparison or conclusion, in one or two sentences.\n"
        "If the image is not a diagram or chart, say so, then describe it briefly.",
        image_tokens=1120,  # axis labels, legends and values are small text
    ),
    # Not a description: a verdict in OpenAI's moderation shape, read by moderation.verdict_of.
    "check_content": Level("Check content", moderation.PROMPT),
}
DEFAULT_LEVEL = "detailed"
DESCRIBE_OFF = "off"  # the composer's describe mode when it only sends messages


def level_prompt(level: str) -> str:
    """The prompt for `level` (ValueError, in one sentence, for an unknown one)."""
    if level not in LEVELS:
        raise ValueError(f"The level must be one of {', '.join(LEVELS)}, not {level!r}.")
    return LEVELS[level].prompt


def level_of(text: str) -> str | None:
    """The level whose prompt `text` is, or None for anything else the person wrote."""
    return next((level for level, spec in LEVELS.items() if spec.prompt == text), None)


def is_description(text: str) -> bool:
    """Whether `text` is a level's prompt: a description asked for, not the person's words."""
    return level_of(text) is not None


def level_options(level: str | None, options: GenerationOptions) -> GenerationOptions:
    """`options` for answering at `level`: with Image detail on Auto, the level's own budget
    (Read all text and Diagram or chart ask for 1120); a budget the person chose stays. Check
    content's answer is held to the verdict's schema (moderation.VERDICT_SCHEMA), and Alt
    text's to its form (ALT_TEXT_GRAMMAR), so that an in-process engine always gives a whole
    verdict, and alt text of a kind, without thinking first."""
    if level == "check_content":
        options = replace(options, response_schema=moderation.VERDICT_SCHEMA, thinking=False)
    if level == "alt_text":
        options = replace(options, response_grammar=ALT_TEXT_GRAMMAR, thinking=False)
    if level is None or options.image_tokens != AUTO_IMAGE_TOKENS:
        return options
    return replace(options, preferred_image_tokens=LEVELS[level].image_tokens)


def description_request(
    image: Image.Image,
    level: str,
    options: GenerationOptions | None = None,
    context: str = "",
) -> ChatRequest:
    """A request for a standalone description of `image` at `level` (ValueError if unknown): its
    messages (see description_messages) and `options` (the model's own by default) as the level
    asks for them (see level_options)."""
    messages = description_messages(image, level, context)
    return ChatRequest(tuple(messages), level_options(level, options or GenerationOptions()))


def description_messages(image: Image.Image, level: str, context: str = "") -> list[Message]:
    """The conversation that asks for a description at `level` (ValueError if unknown); with
    `context`, what the image is for, so that alt text says its purpose there."""
    return [Message("user", prompt_in_context(level, context), images=(image,))]


def prompt_in_context(level: str, context: str = "") -> str:
    """The prompt of `level` (ValueError if unknown); with `context`, what the image is for."""
    prompt = level_prompt(level)
    if context:
        prompt += (
            f"\n\nThe image is used here: {context}. Write for that purpose: say what the "
            "image means there, and call it decorative if it adds nothing there."
        )
    return prompt


def checked_content(answer: str) -> dict:
    """A Check content answer as a document a program can parse: the AI notice beside the
    verdict object (moderation.Verdict's fields), or a null verdict with the sentence saying
    why the answer held none; the model's answer as it came."""
    try:
        verdict, problem = asdict(moderation.verdict_of(answer)), None
    except moderation.NotAVerdict as exc:
        verdict, problem = None, str(exc)
    return {"notice": AI_NOTICE, "verdict": verdict, "verdict_problem": problem, "answer": answer}


@dataclass(frozen=True)
class AltText:
    """An alt-text answer taken apart: the kind, the alt text, and a long description."""

    kind: str  # "decorative", "informative" or "complex"; "" when the answer has no Kind line
    text: str
    long_description: str = ""


_KIND = re.compile(r"^\s*Kind:\s*\**\s*(decorative|informative|complex)", re.I | re.M)
_ALT = re.compile(r"^\s*Alt text:[ \t]*(.*)$", re.I | re.M)
_LONG = re.compile(r"^\s*Long description:\s*(.*)\Z", re.I | re.M | re.S)
# Control characters other than tab and newline: nothing an alt attribute can hold.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def alt_text_of(answer: str) -> AltText:
    """The alt text in an answer to the alt-text prompt. An answer that does not keep to the
    asked-for form is taken whole as the alt text, for the person to edit."""
    answer = answer.removeprefix(AI_NOTICE).replace("\r\n", "\n").replace("\r", "\n")
    answer = _CONTROL.sub("", answer).strip()
    kind, alt = _KIND.search(answer), _ALT.search(answer)
    if alt is None:
        return AltText(kind.group(1).lower() if kind else "", answer)
    long = _LONG.search(answer)
    return AltText(
        kind.group(1).lower() if kind else "",
        alt.group(1).strip().strip('"'),
        long.group(1).strip() if long else "",
    )
