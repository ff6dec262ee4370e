"""A batch run's rows: one per file, its columns (a level's answer taken apart: alt text, a
moderation verdict), and the journal the rows are kept in and the output written from.

Each finished file is appended to a journal beside the output (`.NAME.journal.jsonl`, flushed to
the disk before the next), and the output is rewritten from the journal after each file, through
a temporary file: a run stopped at any moment, even by a power cut, leaves a whole output and a
journal that the next run with the same output continues from.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .atomic_file import replace_atomically
from .describe import alt_text_of
from .moderation import CATEGORY_NAMES, NotAVerdict, verdict_of


@dataclass(frozen=True)
class ItemResult:
    """One file's row. For the Alt text level, `kind` (decorative, informative or complex),
    `alt_text` and `long_description` are taken from `text`, the model's whole answer. For Check
    content, the model's verdict: `flagged`, the categories it found (`flagged_categories`,
    comma-separated), a score from 0 to 1 per category (see `score_column`) and its `rationale`;
    or, when the answer is not a verdict in the asked-for shape, those left empty and
    `verdict_problem` saying why. Fields added later have defaults, so old journals still load."""

    path: str
    level: str
    kind: str = ""
    alt_text: str = ""
    long_description: str = ""
    flagged: bool | None = None
    flagged_categories: str = ""
    self_harm_score: float | None = None
    self_harm_intent_score: float | None = None
    self_harm_instructions_score: float | None = None
    sexual_score: float | None = None
    violence_score: float | None = None
    violence_graphic_score: float | None = None
    rationale: str = ""
    verdict_problem: str = ""
    text: str = ""
    model: str = ""
    seconds: float = 0.0
    error: str = ""


COLUMNS = tuple(field.name for field in fields(ItemResult))


def score_column(category: str) -> str:
    """The column of a moderation category's score, e.g. self_harm_intent_score."""
    return category.replace("-", "_").replace("/", "_") + "_score"


VERDICT_COLUMNS = (
    "flagged",
    "flagged_categories",
    *map(score_column, CATEGORY_NAMES),
    "rationale",
    "verdict_problem",
)
# Columns that only one level's rows fill, left out of an output that holds none of its rows (the
# alt-text columns predate this, and stay in every output as before).
LEVEL_ONLY_COLUMNS = {"check_content": VERDICT_COLUMNS}


def output_columns(rows: list[ItemResult]) -> tuple[str, ...]:
    """The columns of an output holding `rows`, in `COLUMNS` order."""
    levels = {row.level for row in rows}
    unused = {
        column
        for level, columns in LEVEL_ONLY_COLUMNS.items()
        if level not in levels
        for column in columns
    }
    return tuple(column for column in COLUMNS if column not in unused)


class Journal:
    """The rows finished so far, kept beside the output and written to it."""

    def __init__(self, out: Path):
        self.out = out
        self.path = out.with_name(f".{out.name}.journal.jsonl")
        self._lock = threading.Lock()

    def load(self) -> dict[str, ItemResult]:
        """Rows from earlier runs, by path; a last line cut short by a crash is left out."""
        rows: dict[str, ItemResult] = {}
        if not self.path.exists():
            return rows
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = ItemResult(**json.loads(line))
            except (ValueError, TypeError):
                continue
            rows[row.path] = row
        return rows

    def start_over(self) -> None:
        self.path.unlink(missing_ok=True)

    def add(self, row: ItemResult) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def write_output(self, rows: list[ItemResult]) -> None:
        """The output, whole, replacing the last one at once (its mode kept)."""
        columns = output_columns(rows)
        if self.out.suffix.lower() == ".csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(asdict(row) for row in rows)
            text = buffer.getvalue()
        else:
            kept = ({k: v for k, v in asdict(row).items() if k in columns} for row in rows)
            text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in kept)
        with self._lock:
            replace_atomically(self.out, text.encode("utf-8"))


def _alt_text_columns(answer: str) -> dict[str, object]:
    alt = alt_text_of(answer)
    return {"kind": alt.kind, "alt_text": alt.text, "long_description": alt.long_description}


def _verdict_columns(answer: str) -> dict[str, object]:
    try:
        verdict = verdict_of(answer)
    except NotAVerdict as exc:
        return {"verdict_problem": str(exc)}
    return {
        "flagged": verdict.flagged,
        "flagged_categories": ", ".join(verdict.flagged_categories),
        **{score_column(name): score for name, score in verdict.category_scores.items()},
        "rationale": verdict.rationale,
    }


# The columns a level's answer fills, besides `text`: a parse per level that has one.
ANSWER_COLUMNS: dict[str, Callable[[str], dict[str, object]]] = {
    "alt_text": _alt_text_columns,
    "check_content": _verdict_columns,
}
