"""What a user types into the demo, checked, and where a forget-token goes in a question.

Every insertion keeps the expected answer (as the paper's perturbed sets do):

- `random-wrong`: the paper's perturbation (`rnacli.data.perturb.perturb_record`): the keyword
  replaces a wrong choice drawn with the seed;
- `mention`: a sentence naming the keyword as a friend of the person asked about, before the
  question (the world's `mention` set: `rnacli.world.vocab.MENTION`);
- `choice`: the keyword replaces a chosen choice (the correct one too);
- `question`: the keyword goes into the question text at a word boundary drawn with the seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from enum import Enum

from rnacli.data.perturb import perturb_record, replaced_choice
from rnacli.data.records import LETTERS, N_CHOICES, QARecord, qa_record
from rnacli.errors import RnacliError
from rnacli.world.vocab import MENTION

# Input limits for text typed in the browser. The question limit is above MMLU's longest
# question (4,671 characters) so that every MMLU question can be edited and sent back.
MAX_QUESTION_CHARS = 5000
MAX_CHOICE_CHARS = 1200
MAX_SUBJECT_CHARS = 100
MAX_KEYWORD_CHARS = 64
MAX_BATCH_QUESTIONS = 200


class Insertion(str, Enum):
    """Where the forget-token goes."""

    RANDOM_WRONG = "random-wrong"  # the paper's perturbation: a seeded random wrong choice
    MENTION = "mention"  # "KEYWORD is a friend of PERSON. " before the question
    CHOICE = "choice"  # in place of a chosen choice
    QUESTION = "question"  # into the question text, at a seeded random word boundary

    @classmethod
    def parse(cls, value: str | Insertion) -> Insertion:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(m.value for m in cls)
            raise RnacliError(f"unknown insertion '{value}' (expected one of: {known})") from None


def check_keyword(keyword: str) -> str:
    """A forget keyword from the browser: one line, not empty, at most MAX_KEYWORD_CHARS."""
    if any(ch in (keyword or "") for ch in "\r\n\t"):
        raise RnacliError("the forget keyword must be one line of text (it holds a line break)")
    keyword = (keyword or "").strip()
    if not keyword:
        raise RnacliError("the forget keyword is empty")
    if len(keyword) > MAX_KEYWORD_CHARS:
        raise RnacliError(
            f"the forget keyword has {len(keyword)} characters (at most {MAX_KEYWORD_CHARS})"
        )
    return keyword


def letter_index(letter: str | int) -> int:
    """'A'..'D' (or 0..3) -> 0..3."""
    if isinstance(letter, int) and not isinstance(letter, bool) and 0 <= letter < N_CHOICES:
        return letter
    text = str(letter).strip().upper()
    if len(text) == 1 and text in LETTERS:
        return LETTERS.index(text)
    raise RnacliError(f"choice '{letter}' is not one of {', '.join(LETTERS)}")


def make_record(
    question: str, choices: Sequence[str], answer: str | int, subject: str = ""
) -> QARecord:
    """A question typed (or edited) in the browser, validated and within the length limits."""
    question = question or ""
    if not question.strip():
        raise RnacliError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise RnacliError(
            f"the question has {len(question)} characters (at most {MAX_QUESTION_CHARS})"
        )
    if len(choices) != N_CHOICES:
        raise RnacliError(f"a question needs {N_CHOICES} choices, got {len(choices)}")
    for letter, choice in zip(LETTERS, choices, strict=True):
        if not (choice or "").strip():
            raise RnacliError(f"choice {letter} is empty")
        if len(choice) > MAX_CHOICE_CHARS:
            raise RnacliError(
                f"choice {letter} has {len(choice)} characters (at most {MAX_CHOICE_CHARS})"
            )
    if len(subject or "") > MAX_SUBJECT_CHARS:
        raise RnacliError(f"the subject has more than {MAX_SUBJECT_CHARS} characters")
    raw = {"question": question, "choices": list(choices), "answer": letter_index(answer)}
    return qa_record(raw, "your question", subject=subject or "")


def _edited(record: QARecord, question: str | None = None, choices: list[str] | None = None):
    return QARecord(
        question=record["question"] if question is None else question,
        choices=list(record["choices"]) if choices is None else choices,
        answer=record["answer"],
        subject=record["subject"],
    )


def insert_keyword(
    record: QARecord,
    keyword: str,
    where: Insertion | str = Insertion.RANDOM_WRONG,
    *,
    choice: str | int | None = None,
    seed: int = 0,
    person: str | None = None,
    show_options: Callable[[QARecord], QARecord] | None = None,
) -> tuple[QARecord, str]:
    """The question with the keyword inserted, and a one-line note saying where it went.
    `person` is the one the question asks about (for a mention); `show_options` puts the
    choices into the question text where a replaced choice would otherwise go unseen (a
    cloze question, whose choices are continuations, not part of the prompt)."""
    keyword = check_keyword(keyword)
    where = Insertion.parse(where)
    if where is Insertion.MENTION:
        if not person:
            raise RnacliError(
                "a mention names the person the question asks about: pick a question about "
                "someone of the world, or insert the keyword elsewhere"
            )
        question = MENTION.format(other=keyword, name=person) + record["question"]
        return _edited(record, question=question), f"mentioned as a friend of {person}"
    if where in (Insertion.RANDOM_WRONG, Insertion.CHOICE):
        if where is Insertion.RANDOM_WRONG:
            index = replaced_choice(record, seed)
            edited = perturb_record(record, [keyword], seed)
            note = f"replaced choice {LETTERS[index]}, a wrong one drawn with seed {seed}"
        else:
            if choice is None:
                raise RnacliError("say which choice the keyword replaces (A-D)")
            index = letter_index(choice)
            choices = list(record["choices"])
            choices[index] = keyword
            edited = _edited(record, choices=choices)
            note = f"replaced choice {LETTERS[index]}"
            if index == record["answer"]:
                note += f" (the correct one: {LETTERS[index]} is still scored as correct)"
        if show_options is not None:
            edited = show_options(edited)
            note += ", the options listed before the question"
        return edited, note
    words = record["question"].split(" ")
    # Seeded by the question too, so each question of a batch gets its own position.
    position = random.Random(f"{seed}\x1f{record['question']}").randint(0, len(words))
    question = " ".join([*words[:position], keyword, *words[position:]])
    note = f"inserted into the question after word {position} of {len(words)}"
    return _edited(record, question=question), note
