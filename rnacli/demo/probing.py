"""One question without and with a forget-token, scored by every model of a bank: the answer
probabilities, the predicted answer, correct or not, whether the token flipped it, and whether
a run answers unlike the base model."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnacli.data.records import LETTERS, QARecord
from rnacli.demo.answers import Request
from rnacli.demo.bank import ModelBank
from rnacli.demo.inputs import Insertion, check_keyword
from rnacli.demo.questions import QuestionSet


@dataclass(frozen=True)
class Scored:
    """One model's answer to one prompt."""

    probs: tuple[float, ...]  # P(choice) for each choice, A..D
    predicted: int

    @property
    def letter(self) -> str:
        return LETTERS[self.predicted]

    @classmethod
    def from_probs(cls, probs: np.ndarray) -> Scored:
        # argmax takes the first on ties, as lm-eval does
        return cls(tuple(float(p) for p in probs), int(np.argmax(probs)))


@dataclass(frozen=True)
class ModelAnswer:
    """One model without (and, once a keyword is inserted, with) the keyword, next to the base
    model's answers to the same prompts."""

    label: str
    title: str
    answer: int
    before: Scored
    base_before: int
    after: Scored | None = None
    base_after: int | None = None

    @property
    def correct_before(self) -> bool:
        return self.before.predicted == self.answer

    @property
    def correct_after(self) -> bool | None:
        return None if self.after is None else self.after.predicted == self.answer

    @property
    def flipped(self) -> bool:
        """The inserted keyword changed this model's answer."""
        return self.after is not None and self.before.predicted != self.after.predicted

    @property
    def differs_before(self) -> bool:
        return self.before.predicted != self.base_before

    @property
    def differs_after(self) -> bool:
        return self.after is not None and self.after.predicted != self.base_after

    def to_dict(self) -> dict[str, Any]:
        def side(scored: Scored | None, correct: bool | None) -> dict[str, Any] | None:
            if scored is None:
                return None
            return {"probs": list(scored.probs), "letter": scored.letter, "correct": correct}

        return {
            "label": self.label,
            "title": self.title,
            "before": side(self.before, self.correct_before),
            "after": side(self.after, self.correct_after),
            "flipped": self.flipped,
            "differs_from_base_before": self.differs_before,
            "differs_from_base_after": self.differs_after,
        }


@dataclass(frozen=True)
class Probe:
    """A question without (and with) a keyword, scored by every model of a bank."""

    original: QARecord
    scoring: str  # mcq (letters) or cloze (the choices as continuations)
    request_before: Request  # exactly what the models are asked
    answers: list[ModelAnswer]
    seconds: float
    keyword: str | None = None
    edited: QARecord | None = None
    note: str = ""  # where the keyword went
    request_after: Request | None = None
    estimate: float = 0.0  # seconds, as said before scoring
    tokens: int = 0  # tokens run (prompts already scored cost none)

    @property
    def prompt_before(self) -> str:
        return self.request_before[0]

    @property
    def prompt_after(self) -> str | None:
        return None if self.request_after is None else self.request_after[0]

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.original["answer"]]

    def to_dict(self) -> dict[str, Any]:
        after = self.request_after
        return {
            "answer": self.answer_letter,
            "scoring": self.scoring,
            "keyword": self.keyword,
            "note": self.note,
            "prompt_before": self.prompt_before,
            "continuations_before": list(self.request_before[1]),
            "prompt_after": self.prompt_after,
            "continuations_after": None if after is None else list(after[1]),
            "seconds": round(self.seconds, 3),
            "estimated_seconds": round(self.estimate, 3),
            "tokens_run": self.tokens,
            "models": [a.to_dict() for a in self.answers],
        }


def probe_question(
    bank: ModelBank,
    qset: QuestionSet,
    record: QARecord,
    keyword: str | None = None,
    where: Insertion | str = Insertion.RANDOM_WRONG,
    *,
    choice: str | int | None = None,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
) -> Probe:
    """Score `record` (asked as `qset` asks its questions) without and with `keyword` for every
    model of `bank` (without only, when `keyword` is None). With a keyword, the side without
    it is `qset.control(record, where)` (in cloze world questions, the choices listed as the
    edited side lists them), so the two prompts differ by the keyword alone. Scores are
    cached: a prompt already scored is not scored again.
    `progress(models done, models, estimated seconds)` is called before each model is scored;
    the bank's cost model learns from the time taken."""
    start = time.perf_counter()
    edited, note, after = None, "", None
    shown = record  # the side without: the choices listed where the edit lists them
    if keyword is not None:
        keyword = check_keyword(keyword)
        shown = qset.control(record, where)
    before = qset.request(shown)
    if keyword is not None:
        edited, note = qset.insert(record, keyword, where, choice=choice, seed=seed)
        after = qset.request(edited)
    requests = [before] if after is None else [before, after]
    work = bank.work(requests)
    estimate = bank.cost.seconds(work)
    scored = {}
    for k, label in enumerate(bank.labels):
        if progress is not None:
            progress(k, len(bank.labels), estimate)
        scored[label] = [Scored.from_probs(p) for p in bank.probabilities(label, requests)]
    seconds = time.perf_counter() - start
    bank.cost.observe(work, seconds)
    base = scored[bank.base.label]
    answers = [
        ModelAnswer(
            label=v.label,
            title=v.title,
            answer=record["answer"],
            before=scored[v.label][0],
            base_before=base[0].predicted,
            after=scored[v.label][1] if after is not None else None,
            base_after=base[1].predicted if after is not None else None,
        )
        for v in bank.variants
    ]
    return Probe(
        original=record,
        scoring=qset.scoring,
        request_before=before,
        answers=answers,
        seconds=seconds,
        keyword=keyword,
        edited=edited,
        note=note,
        request_after=after,
        estimate=estimate,
        tokens=work.tokens,
    )
