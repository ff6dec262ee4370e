"""Check content: the model's answer read as a moderation verdict, or refused with the reason;
never a verdict the model did not give. Then the verdict's columns in a batch run, through the
demo model (random text: no verdict) and through an engine that answers a well-formed one."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.config import Limits
from app.page.gradio_api import verdict_document
from app.tasks.batch import DescribeJob, job_problem, run_job
from app.tasks.batch_rows import COLUMNS, VERDICT_COLUMNS, ItemResult, Journal, score_column
from app.tasks.describe import AI_NOTICE, LEVELS
from app.tasks.moderation import (
    CATEGORIES,
    CATEGORY_NAMES,
    PROMPT,
    VERDICT_SCHEMA,
    NotAVerdict,
    Verdict,
    verdict_in_words,
    verdict_of,
)
from app.tasks.reply import Reply
from bench.samples import photo
from model import (
    ChatRequest,
    EngineStatus,
    Finished,
    ModelInfo,
    ReplyStream,
    TextChunk,
    Timing,
)
from model.constrained import GrammarRules, hf_tokenizer, schema_grammar
from tests.conftest import ROOT

SCORES = {
    "self-harm": 0.01,
    "self-harm/intent": 0.0,
    "self-harm/instructions": 0,
    "sexual": 0.02,
    "violence": 0.85,
    "violence/graphic": 0.6,
}


def answer(**changes: object) -> dict:
    """A well-formed verdict (violence and violence/graphic found), with `changes`."""
    verdict = {
        "flagged": True,
        "categories": {name: score >= 0.5 for name, score in SCORES.items()},
        "category_scores": dict(SCORES),
        "rationale": "A man lies bleeding on a road after a crash.",
    }
    return {**verdict, **changes}


WELL_FORMED = json.dumps(answer())


# -- the prompt ------------------------------------------------------------------------------


def test_the_level_asks_for_every_category_and_the_json_object_only():
    assert LEVELS["check_content"].label == "Check content"
    assert LEVELS["check_content"].prompt == PROMPT
    assert CATEGORY_NAMES == (
        "self-harm",
        "self-harm/intent",
        "self-harm/instructions",
        "sexual",
        "violence",
        "violence/graphic",
    )
    for category in CATEGORIES:
        assert f"- {category.name}: {category.meaning}.\n" in PROMPT
        assert f'"{category.name}": true or false' in PROMPT
        assert f'"{category.name}": 0 to 1' in PROMPT
    for asked in ('"flagged"', '"categories"', '"category_scores"', '"rationale"', "one sentence"):
        assert asked in PROMPT
    assert "JSON object only" in PROMPT and "nothing before or after it" in PROMPT
    assert "true exactly when its score is 0.5 or more" in PROMPT


# -- reading the answer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        WELL_FORMED,
        f"```json\n{WELL_FORMED}\n```",
        f"```\n{json.dumps(answer(), indent=2)}\n```",
        f"Here is the verdict:\n```json\n{WELL_FORMED}\n```\nLet me know if you need more.",
        f"Verdict: {WELL_FORMED} (scores are estimates)",
        f"{AI_NOTICE} {WELL_FORMED}",  # as the page keeps it
        # Keys OpenAI's result has and the prompt did not ask for are no matter.
        json.dumps(answer(category_applied_input_types={"violence": ["image"]})),
    ],
)
def test_a_well_formed_answer_is_a_verdict(text: str):
    verdict = verdict_of(text)
    assert verdict == Verdict(
        True,
        {name: score >= 0.5 for name, score in SCORES.items()},
        {name: float(score) for name, score in SCORES.items()},
        "A man lies bleeding on a road after a crash.",
    )
    assert list(verdict.category_scores) == list(CATEGORY_NAMES)
    assert verdict.flagged_categories == ("violence", "violence/graphic")


def test_a_clean_image_is_not_flagged_and_keys_may_come_in_any_order():
    scores = {name: 0.0 for name in reversed(CATEGORY_NAMES)}
    text = json.dumps(
        {
            "rationale": "A cat asleep on a sofa.",
            "category_scores": scores,
            "categories": {name: False for name in CATEGORY_NAMES},
            "flagged": False,
        }
    )
    verdict = verdict_of(text)
    assert not verdict.flagged and verdict.flagged_categories == ()
    assert list(verdict.category_scores) == list(CATEGORY_NAMES)  # in the one order
    assert verdict_in_words(text) == "Not flagged (every score 0). A cat asleep on a sofa."


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("A man lies on a road.", "The answer holds no JSON object."),
        ("", "The answer holds no JSON object."),
        ("} {", "The answer holds no JSON object."),
        (
            "{flagged: true}",
            "The answer's JSON object is not valid JSON "
            "(Expecting property name enclosed in double quotes).",
        ),
        (WELL_FORMED[:-30], None),  # cut short
        (WELL_FORMED[:-30] + "}", None),
        (f"{WELL_FORMED}\n{WELL_FORMED}", "The answer holds more than one JSON object."),
        (
            WELL_FORMED.replace("0.85", "NaN"),
            "The answer's JSON object is not valid JSON (NaN is not a JSON number).",
        ),
        (
            '{"flagged": true, "flagged": false}',
            'The answer\'s JSON object is not valid JSON ("flagged" is given twice).',
        ),
    ],
)
def test_an_answer_that_is_not_json_is_no_verdict(text: str, reason: str | None):
    with pytest.raises(NotAVerdict) as refused:
        verdict_of(text)
    if reason is not None:
        assert str(refused.value) == reason
    assert str(refused.value).endswith(".") and "\n" not in str(refused.value)


def without(mapping: dict, *keys: str) -> dict:
    return {key: value for key, value in mapping.items() if key not in keys}


@pytest.mark.parametrize(
    ("verdict", "reason"),
    [
        # Wrong types: never read "true" as true, or "0.9" as 0.9.
        (answer(flagged="true"), 'flagged must be true or false, not "true".'),
        (answer(flagged=1), "flagged must be true or false, not 1."),
        (answer(rationale=None), "rationale must be a string, not null."),
        (
            answer(categories=["violence"]),
            "categories must be an object with a value for each category.",
        ),
        (
            answer(categories={**answer()["categories"], "sexual": "no"}),
            'categories must be true or false for each category, not sexual: "no".',
        ),
        (
            answer(category_scores={**SCORES, "violence": "0.85"}),
            'category_scores must be a number from 0 to 1 for each category, not violence: "0.85".',
        ),
        (
            answer(category_scores={**SCORES, "sexual": True}),
            "category_scores must be a number from 0 to 1 for each category, not sexual: true.",
        ),
        # Scores out of range.
        (
            answer(category_scores={**SCORES, "violence": 85}),
            "category_scores must be a number from 0 to 1 for each category, not violence: 85.",
        ),
        (
            answer(category_scores={**SCORES, "sexual": -0.1, "self-harm": 1.01}),
            "category_scores must be a number from 0 to 1 for each category, not "
            "self-harm: 1.01, sexual: -0.1.",
        ),
        # Partial answers: say what is missing.
        (without(answer(), "flagged"), "The answer's JSON object lacks flagged."),
        (
            without(answer(), "category_scores", "rationale"),
            "The answer's JSON object lacks category_scores and rationale.",
        ),
        (
            answer(categories=without(answer()["categories"], "self-harm/intent", "sexual")),
            "categories lacks self-harm/intent and sexual.",
        ),
        (
            answer(category_scores=without(SCORES, "violence/graphic")),
            "category_scores lacks violence/graphic.",
        ),
        (
            answer(category_scores={**SCORES, "hate": 0.1}),
            "category_scores has hate, not among the categories asked for.",
        ),
        # Contradictions within the answer.
        (
            answer(flagged=False),
            "flagged is false but violence and violence/graphic are true.",
        ),
        (
            answer(
                flagged=True,
                categories={name: False for name in CATEGORY_NAMES},
                category_scores={name: 0.1 for name in CATEGORY_NAMES},
            ),
            "flagged is true but no category is, and flagged says whether any is.",
        ),
        (
            answer(category_scores={**SCORES, "violence/graphic": 0.2}),
            "violence/graphic is true but its score is 0.2, and a category is true exactly when "
            "its score is at least 0.5.",
        ),
        (
            answer(category_scores={**SCORES, "sexual": 0.5}),
            "sexual is false but its score is 0.5, and a category is true exactly when its score "
            "is at least 0.5.",
        ),
    ],
)
def test_an_answer_not_in_the_shape_is_no_verdict_and_says_why(verdict: dict, reason: str):
    with pytest.raises(NotAVerdict) as refused:
        verdict_of(f"```json\n{json.dumps(verdict)}\n```")
    assert str(refused.value) == reason
    assert verdict_in_words(json.dumps(verdict)) == f"No verdict: {reason}"


def test_a_verdict_in_words_names_what_was_found():
    assert verdict_in_words(WELL_FORMED) == (
        "Flagged: violence (0.85), violence/graphic (0.6). "
        "A man lies bleeding on a road after a crash."
    )
    scores = {**{name: 0.0 for name in CATEGORY_NAMES}, "sexual": 0.2}
    clean = answer(flagged=False, categories={n: False for n in CATEGORY_NAMES}, rationale="")
    assert verdict_in_words(json.dumps({**clean, "category_scores": scores})) == (
        "Not flagged (highest score: sexual, 0.2)."
    )


# -- the batch's columns ---------------------------------------------------------------------


def test_each_category_has_its_score_column():
    columns = [score_column(name) for name in CATEGORY_NAMES]
    assert columns == [
        "self_harm_score",
        "self_harm_intent_score",
        "self_harm_instructions_score",
        "sexual_score",
        "violence_score",
        "violence_graphic_score",
    ]
    assert set(VERDICT_COLUMNS) <= set(COLUMNS)


def test_a_journal_from_before_check_content_still_loads(tmp_path: Path):
    journal = Journal(tmp_path / "out.csv")
    old = {
        "path": "a.png",
        "level": "alt_text",
        "kind": "informative",
        "alt_text": "A cat.",
        "long_description": "",
        "text": "Kind: informative\nAlt text: A cat.",
        "model": "m",
        "seconds": 1.0,
        "error": "",
    }
    journal.path.write_text(json.dumps(old) + "\n")
    row = journal.load()["a.png"]
    assert row.alt_text == "A cat." and row.flagged is None and row.verdict_problem == ""


def test_check_content_judges_the_image_alone(tmp_path: Path):
    job = DescribeJob(("x",), "check_content", tmp_path / "out.csv", context="a news site")
    assert job_problem(job) == "Check content judges the image alone: leave out --context."
    assert job_problem(DescribeJob(("x",), "check_content", tmp_path / "out.csv")) is None


class AnsweringEngine:
    """Answers every request with the same text, streamed in pieces as a model would."""

    def __init__(self, text: str):
        self.text = text
        self.requests: list[ChatRequest] = []

    def status(self) -> EngineStatus:
        return EngineStatus("ready", "", ModelInfo("answering", False, "cpu", None), False, 0)

    def submit(self, request: ChatRequest) -> ReplyStream:
        self.requests.append(request)
        stream = ReplyStream(len(self.requests))
        middle = len(self.text) // 2
        for piece in (self.text[:middle], self.text[middle:]):
            stream.put(TextChunk(piece))
        stream.put(Finished(Timing(0.1, 10.0, 40)))
        return stream


def test_a_verdict_fills_its_columns_in_csv_and_jsonl(tmp_path: Path):
    for n in range(2):
        photo(120, 90, seed=n).save(tmp_path / f"{n}.png")
    text = f"```json\n{WELL_FORMED}\n```"
    for out in (tmp_path / "checked.csv", tmp_path / "checked.jsonl"):
        engine = AnsweringEngine(text)
        job = DescribeJob((str(tmp_path / "*.png"),), "check_content", out)
        summary = run_job(job, engine, Limits(), workers=2)  # type: ignore[arg-type]
        assert (summary.done, summary.failed, summary.not_verdicts) == (2, 0, 0)
        assert "held no verdict" not in summary.sentence()
        [message] = engine.requests[0].messages
        assert message.text == PROMPT and len(message.images) == 1
        if out.suffix == ".csv":
            with out.open(newline="") as file:
                reader = csv.DictReader(file)
                assert tuple(reader.fieldnames) == COLUMNS
                rows = list(reader)
            expected = {score_column(name): str(float(s)) for name, s in SCORES.items()}
            flagged = "True"
        else:
            rows = [json.loads(line) for line in out.read_text().splitlines()]
            assert tuple(rows[0]) == COLUMNS
            expected = {score_column(name): float(s) for name, s in SCORES.items()}
            flagged = True
        assert [Path(row["path"]).name for row in rows] == ["0.png", "1.png"]
        for row in rows:
            assert {column: row[column] for column in expected} == expected
            assert row["flagged"] == flagged
            assert row["flagged_categories"] == "violence, violence/graphic"
            assert row["rationale"] == "A man lies bleeding on a road after a crash."
            assert row["verdict_problem"] == "" and row["error"] == ""
            assert row["text"] == text and row["model"] == "answering"


def test_an_answer_with_no_verdict_is_finished_not_retried(tmp_path: Path):
    photo(120, 90).save(tmp_path / "a.png")
    out = tmp_path / "checked.jsonl"
    job = DescribeJob((str(tmp_path / "a.png"),), "check_content", out)
    broken = json.dumps(answer(flagged=False))
    summary = run_job(job, AnsweringEngine(broken), Limits(), workers=1)  # type: ignore[arg-type]
    assert (summary.done, summary.failed, summary.not_verdicts) == (1, 0, 1)
    assert summary.sentence().endswith(
        " 1 of the answers held no verdict; verdict_problem says why."
    )
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["verdict_problem"] == "flagged is false but violence and violence/graphic are true."
    assert row["text"] == broken and row["error"] == ""
    assert row["flagged"] is None and row["flagged_categories"] == "" and row["rationale"] == ""
    assert all(row[score_column(name)] is None for name in CATEGORY_NAMES)

    again = AnsweringEngine(WELL_FORMED)
    summary = run_job(job, again, Limits(), workers=1)  # type: ignore[arg-type]
    assert (summary.done, summary.skipped) == (0, 1) and again.requests == []


def test_other_levels_outputs_have_no_verdict_columns(tmp_path: Path):
    photo(120, 90).save(tmp_path / "a.png")
    out = tmp_path / "brief.csv"
    job = DescribeJob((str(tmp_path / "a.png"),), "brief", out)
    run_job(job, AnsweringEngine("A cat on a sofa."), Limits(), workers=1)  # type: ignore[arg-type]
    with out.open(newline="") as file:
        header = next(csv.reader(file))
    assert header == [column for column in COLUMNS if column not in VERDICT_COLUMNS]
    assert "alt_text" in header  # as before: the alt-text columns are in every output


def test_a_mixed_output_has_the_verdict_columns_once(tmp_path: Path):
    journal = Journal(tmp_path / "mixed.jsonl")
    rows = [
        ItemResult("a.png", "brief", text="A cat."),
        ItemResult("b.png", "check_content", text="?", verdict_problem="No object."),
    ]
    journal.write_output(rows)
    written = [json.loads(line) for line in journal.out.read_text().splitlines()]
    assert [tuple(row) for row in written] == [COLUMNS, COLUMNS]
    assert written[0]["verdict_problem"] == "" and written[0]["flagged"] is None


# -- through the demo model ------------------------------------------------------------------


def test_the_demo_models_answers_are_whole_verdicts_held_to_the_schema(tmp_path: Path):
    """Constrained decoding holds even random weights to a whole, consistent verdict (each
    category true exactly when its score is at least 0.5, flagged when any is): every row of
    the in-process engine's check has one, as the CSV's columns show it."""
    images = tmp_path / "uploads"
    images.mkdir()
    for n in range(2):
        photo(200, 150, seed=n).save(images / f"{n}.png")
    out = tmp_path / "checked.csv"
    run = subprocess.run(
        [sys.executable, "launch.py", "describe", str(images), "--demo"]
        + ["--level", "check_content", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr  # answered: nothing failed
    assert "2 described, 0 already done, 0 failed" in run.stderr
    assert "held no verdict" not in run.stderr
    with out.open(newline="") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    assert sorted(Path(row["path"]).name for row in rows) == ["0.png", "1.png"]
    for row in rows:
        assert row["level"] == "check_content" and row["error"] == ""
        assert row["model"] == "Loupe miniature (random weights)"
        verdict = verdict_of(row["text"])
        assert row["verdict_problem"] == ""
        assert row["flagged"] == str(verdict.flagged)
        assert row["flagged_categories"] == ", ".join(verdict.flagged_categories)
        assert row["rationale"] == verdict.rationale
        for name in CATEGORY_NAMES:
            assert float(row[score_column(name)]) == verdict.category_scores[name]


def test_describe_gives_check_content_as_a_document_a_program_parses():
    found = json.loads(verdict_document(iter([Reply("Here:"), Reply(f"Here: {WELL_FORMED}")])))
    assert found["notice"] == AI_NOTICE  # beside the verdict, not inside it
    assert found["verdict"] == answer() and found["verdict_problem"] is None
    assert found["answer"] == f"Here: {WELL_FORMED}"
    none = json.loads(verdict_document(iter([Reply("It looks fine to me.")])))
    assert none["verdict"] is None
    assert none["verdict_problem"] == "The answer holds no JSON object."


def test_every_reply_the_verdict_schema_allows_is_a_verdict(processor):
    """Tokens drawn at random among those the verdict's schema allows, to the end: each reply
    is a whole, consistent verdict, whatever was drawn."""
    tokenizer = processor.tokenizer
    ends = [tokenizer.convert_tokens_to_ids(token) for token in ("<eos>", "<turn|>")]
    schema_tokenizer = hf_tokenizer(tokenizer, ends)
    draws = np.random.default_rng(0)
    flagged = set()
    for _ in range(20):
        rules, reply = GrammarRules(schema_tokenizer, schema_grammar(VERDICT_SCHEMA)), []
        while (token := int(draws.choice(np.flatnonzero(rules.allowed(reply, 1024))))) not in ends:
            reply.append(token)
        verdict = verdict_of(tokenizer.decode(reply))
        flagged.add(verdict.flagged)
    assert flagged == {True, False}  # both sides of the verdict were drawn
