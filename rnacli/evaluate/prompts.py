"""lm-eval's zero-shot multiple-choice prompt, byte for byte (its MMLU/WMDP task YAMLs)."""

from __future__ import annotations

from rnacli.data.records import LETTERS, QARecord

# lm-eval scores `target_delimiter + choice`, i.e. " A" .. " D", after the context.
CONTINUATIONS = tuple(f" {letter}" for letter in LETTERS)


def question_text(record: QARecord) -> str:
    """lm-eval's doc_to_text: question, the lettered choices, then 'Answer:'."""
    lines = [record["question"].strip()]
    lines += [
        f"{letter}. {choice}" for letter, choice in zip(LETTERS, record["choices"], strict=True)
    ]
    return "\n".join(lines) + "\nAnswer:"


def description(template: str, record: QARecord) -> str:
    """The task's description line, with `{subject}` in words."""
    return template.replace("{subject}", record["subject"].replace("_", " "))


def prompt(record: QARecord, description_template: str) -> str:
    """The whole context the model sees (description + question); continuations are ' A'..' D'."""
    return description(description_template, record) + question_text(record)


def cloze_prompt(record: QARecord, description_template: str) -> str:
    """Cloze scoring: description + the question as a stem; each choice is a continuation."""
    return description(description_template, record) + record["question"].strip()


def scoring_request(
    record: QARecord, description_template: str, scoring: str = "mcq"
) -> tuple[str, tuple[str, ...]]:
    """(context, continuations) of one question, as `rnacli eval` scores it: `mcq` the letters
    " A".." D" after the lettered prompt; `cloze` each choice after the question as a stem."""
    if scoring == "mcq":
        return prompt(record, description_template), CONTINUATIONS
    if scoring == "cloze":
        context = cloze_prompt(record, description_template)
        return context, tuple(" " + c for c in record["choices"])
    raise ValueError(f"unknown scoring {scoring!r} (expected mcq or cloze)")
