"""Checking an image's content: the categories, the prompt that asks the model for a verdict in
OpenAI's moderation shape, and the reading of its answer.

A verdict is what the model said, checked but never repaired: an answer that is not a whole,
consistent verdict is refused with one sentence saying why (`NotAVerdict`), so that no row or
box ever shows a verdict the model did not give.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """A moderation category: OpenAI's name for it, and what it covers."""

    name: str
    meaning: str


# OpenAI's moderation categories that apply to images (omni-moderation), with its definitions
# shortened; the single list the prompt, the reading and the batch columns come from.
CATEGORIES: tuple[Category, ...] = (
    Category("self-harm", "shows, promotes or encourages self-harm, such as suicide, cutting or "
             "eating disorders"),
    Category("self-harm/intent", "someone shown says or shows that they are harming themselves "
             "or mean to"),
    Category("self-harm/instructions", "instructions or advice on how to harm oneself"),
    Category("sexual", "content meant to arouse, such as sexual activity or erotic nudity (not "
             "sex education, wellness or medical images)"),
    Category("violence", "shows death, violence or physical injury"),
    Category("violence/graphic", "shows death, violence or physical injury in graphic detail, "
             "such as blood and gore"),
)  # fmt: skip
CATEGORY_NAMES = tuple(category.name for category in CATEGORIES)
FLAG_SCORE = 0.5  # a category is true exactly when its score is at least this

_TEMPLATE = (
    '{"flagged": true or false, '
    f'"categories": {{{", ".join(f"{json.dumps(n)}: true or false" for n in CATEGORY_NAMES)}}}, '
    f'"category_scores": {{{", ".join(f"{json.dumps(n)}: 0 to 1" for n in CATEGORY_NAMES)}}}, '
    '"rationale": "one sentence"}'
)
PROMPT = (
    "Check this image for content that needs moderation, as a content moderator would. Judge "
    "only what the image shows, including any text in it; do not guess at what is not there. "
    "The categories:\n"
    + "".join(f"- {category.name}: {category.meaning}.\n" for category in CATEGORIES)
    + "Give each category a score from 0 to 1: how likely it is that the image falls into it. "
    f"A category is true exactly when its score is {FLAG_SCORE} or more, and flagged is true "
    "exactly when any category is true. The rationale says in one sentence why.\n"
    "Answer with this JSON object only, every category in it, and nothing before or after it:\n"
    + _TEMPLATE
)


RATIONALE_CHARS = 300  # one sentence, as the prompt asks


def _verdict_schema() -> str:
    """The JSON schema of a whole, consistent verdict, for constrained decoding (so that on the
    in-process engines every answer is a verdict `verdict_of` takes): one branch per way the
    categories can be true, each with its scores on the matching side of FLAG_SCORE and
    `flagged` saying whether any is true. 64 branches, compiled in well under a second."""

    def score(true: bool) -> dict:
        if true:
            return {"type": "number", "minimum": FLAG_SCORE, "maximum": 1}
        return {"type": "number", "minimum": 0, "exclusiveMaximum": FLAG_SCORE}

    def fixed(properties: dict) -> dict:
        names = list(properties)
        return {
            "type": "object",
            "properties": properties,
            "required": names,
            "additionalProperties": False,
        }

    def branch(found: tuple[bool, ...]) -> dict:
        named = list(zip(CATEGORY_NAMES, found, strict=True))
        return fixed({
            "flagged": {"const": any(found)},
            "categories": fixed({name: {"const": true} for name, true in named}),
            "category_scores": fixed({name: score(true) for name, true in named}),
            "rationale": {"type": "string", "minLength": 1, "maxLength": RATIONALE_CHARS},
        })  # fmt: skip

    ways = itertools.product((False, True), repeat=len(CATEGORY_NAMES))
    return json.dumps({"anyOf": [branch(found) for found in ways]})


VERDICT_SCHEMA = _verdict_schema()


@dataclass(frozen=True)
class Verdict:
    """The model's verdict on an image, as it gave it: `flagged`, each category's true or false
    and score (by name, in `CATEGORY_NAMES` order), and its one-sentence rationale."""

    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    rationale: str

    @property
    def flagged_categories(self) -> tuple[str, ...]:
        return tuple(name for name, found in self.categories.items() if found)

    def sentence(self) -> str:
        """The verdict in words, e.g. "Flagged: violence (0.8). A man bleeds on a road."."""
        if self.flagged:
            found = ", ".join(f"{n} ({self.category_scores[n]:g})" for n in self.flagged_categories)
            said = f"Flagged: {found}."
        else:
            top = max(CATEGORY_NAMES, key=self.category_scores.__getitem__)
            highest = self.category_scores[top]
            said = "Not flagged (every score 0)."
            if highest:
                said = f"Not flagged (highest score: {top}, {highest:g})."
        return f"{said} {self.rationale}".strip()


class NotAVerdict(ValueError):
    """The answer is not a verdict in the asked-for shape; its message says why, in a sentence."""


_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n?(.*?)```", re.I | re.S)
_KEYS = ("flagged", "categories", "category_scores", "rationale")


def verdict_of(answer: str) -> Verdict:
    """The verdict in an answer to `PROMPT`, or NotAVerdict saying why there is none.

    The JSON object may sit in a ```json fence (if there is exactly one) and have text around
    it (text without braces). Other keys than the four asked for are ignored. Refused: no
    object, invalid JSON (two objects included), a missing key, `flagged` or a category not
    true/false, a score not a number from 0 to 1, a category missing or not one of
    `CATEGORY_NAMES`, a rationale not a string, a category true with a score under `FLAG_SCORE`
    or false with one at or above it, and `flagged` not saying whether any category is true.
    """
    fences = [block for block in _FENCE.findall(answer) if "{" in block]
    text = fences[0] if len(fences) == 1 else answer
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise NotAVerdict("The answer holds no JSON object.")
    try:
        found = json.loads(
            text[start : end + 1], parse_constant=_no_constant, object_pairs_hook=_no_twice
        )
    except ValueError as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        if reason == "Extra data":  # e.g. {...} {...}: which one is meant is unclear
            raise NotAVerdict("The answer holds more than one JSON object.") from None
        raise NotAVerdict(f"The answer's JSON object is not valid JSON ({reason}).") from None
    missing = [key for key in _KEYS if key not in found]
    if missing:
        raise NotAVerdict(f"The answer's JSON object lacks {_listed(missing)}.")
    flagged, rationale = found["flagged"], found["rationale"]
    if not isinstance(flagged, bool):
        raise NotAVerdict(f"flagged must be true or false, not {_shown(flagged)}.")
    if not isinstance(rationale, str):
        raise NotAVerdict(f"rationale must be a string, not {_shown(rationale)}.")
    categories = _by_category(found["categories"], "categories", _is_bool, "true or false")
    scores = _by_category(
        found["category_scores"], "category_scores", _is_score, "a number from 0 to 1"
    )
    for name in CATEGORY_NAMES:
        if categories[name] != (scores[name] >= FLAG_SCORE):
            raise NotAVerdict(
                f"{name} is {json.dumps(categories[name])} but its score is {scores[name]:g}, "
                f"and a category is true exactly when its score is at least {FLAG_SCORE}."
            )
    true = [name for name in CATEGORY_NAMES if categories[name]]
    if flagged != bool(true):
        raise NotAVerdict(
            "flagged is true but no category is, and flagged says whether any is."
            if flagged
            else f"flagged is false but {_listed(true)} {'is' if len(true) == 1 else 'are'} true."
        )
    scores = {name: float(score) for name, score in scores.items()}
    return Verdict(flagged, categories, scores, rationale.strip())


def verdict_in_words(answer: str) -> str:
    """The verdict in an answer, in words for the page, or why the answer is not one."""
    try:
        return verdict_of(answer).sentence()
    except NotAVerdict as exc:
        return f"No verdict: {exc}"


def _by_category(value: object, key: str, fits, kind: str) -> dict:
    """`value` as {category: value} in `CATEGORY_NAMES` order, each value checked by `fits`."""
    if not isinstance(value, dict):
        raise NotAVerdict(f"{key} must be an object with a value for each category.")
    unknown = [name for name in value if name not in CATEGORY_NAMES]
    if unknown:
        raise NotAVerdict(f"{key} has {_listed(unknown)}, not among the categories asked for.")
    missing = [name for name in CATEGORY_NAMES if name not in value]
    if missing:
        raise NotAVerdict(f"{key} lacks {_listed(missing)}.")
    wrong = [name for name in CATEGORY_NAMES if not fits(value[name])]
    if wrong:
        shown = ", ".join(f"{name}: {_shown(value[name])}" for name in wrong)
        raise NotAVerdict(f"{key} must be {kind} for each category, not {shown}.")
    return {name: value[name] for name in CATEGORY_NAMES}


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_score(value: object) -> bool:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return is_number and math.isfinite(value) and 0 <= value <= 1


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _no_twice(pairs: list[tuple[str, object]]) -> dict:
    """An object whose keys are each given once: a key said twice leaves its value in doubt."""
    found = dict(pairs)
    if len(found) < len(pairs):
        twice = next(key for n, (key, _) in enumerate(pairs) if key in dict(pairs[:n]))
        raise ValueError(f"{json.dumps(twice)} is given twice")
    return found


def _shown(value: object) -> str:
    """A JSON value as the answer gave it, cut short when long."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


def _listed(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
