"""The batch probe: N questions without and with a forget-token, for every model: accuracy
before/after, flip rate and disagreement with the base model; the table as CSV.

With several keywords (the world's forgotten names), each question gets one, drawn with the
seed: for the paper's insertion exactly as `rnacli.data.perturb.perturb_record` draws it, so
that with the world's seed the edited questions are the world's own perturbed set.
"""

from __future__ import annotations

import csv
import io
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rnacli.data.perturb import perturb_record, replaced_choice
from rnacli.data.records import QARecord
from rnacli.demo.answers import Request
from rnacli.demo.bank import ModelBank
from rnacli.demo.inputs import MAX_BATCH_QUESTIONS, Insertion, check_keyword
from rnacli.demo.questions import QuestionSet
from rnacli.errors import RnacliError


@dataclass(frozen=True)
class BatchRow:
    """One model over a batch of questions."""

    label: str
    title: str
    n: int
    acc_before: float
    acc_after: float
    flip_rate: float  # share of questions whose answer the keyword changed
    differs_from_base: float  # share of questions answered unlike the base (with the keyword)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchResult:
    keyword: str  # the keyword, or how one was drawn per question
    where: str
    rows: list[BatchRow]
    seconds: float
    set_name: str = ""


def keyword_for(record: QARecord, keywords: Sequence[str], where: Insertion, seed: int) -> str:
    """The keyword a question gets: the only one, else one drawn with the seed (for the
    paper's insertion, the one `perturb_record(record, keywords, seed)` puts in)."""
    if len(keywords) == 1:
        return keywords[0]
    if where is Insertion.RANDOM_WRONG:
        return perturb_record(record, keywords, seed)["choices"][replaced_choice(record, seed)]
    return random.Random(f"{seed}\x1f{record['question']}").choice(list(keywords))


def paired_requests(
    qset: QuestionSet,
    records: Sequence[QARecord],
    keywords: Sequence[str],
    where: Insertion | str,
    *,
    choice: str | int | None = None,
    seed: int = 0,
) -> tuple[list[Request], list[Request], list[str]]:
    """(requests without, requests with a keyword, the keyword of each question)."""
    if not keywords:
        raise RnacliError("no keyword to insert")
    keywords = [check_keyword(k) for k in keywords]
    where = Insertion.parse(where)
    used = [keyword_for(r, keywords, where, seed) for r in records]
    before = [qset.request(qset.control(r, where)) for r in records]
    after = [
        qset.request(qset.insert(r, k, where, choice=choice, seed=seed)[0])
        for r, k in zip(records, used, strict=True)
    ]
    return before, after, used


def predictions(
    bank: ModelBank, label: str, before: Sequence[Request], after: Sequence[Request]
) -> tuple[np.ndarray, np.ndarray]:
    """One model's predicted choices without and with the keyword."""
    # Before and after in one call: they batch into the same forward passes.
    probs = bank.probabilities(label, [*before, *after])
    return np.argmax(probs[: len(before)], axis=1), np.argmax(probs[len(before) :], axis=1)


def batch_probe(
    bank: ModelBank,
    qset: QuestionSet,
    records: Sequence[QARecord],
    keywords: Sequence[str],
    where: Insertion | str = Insertion.RANDOM_WRONG,
    *,
    choice: str | int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 8,
    keyword_label: str | None = None,
) -> BatchResult:
    """Accuracy without/with a keyword, flip rate and disagreement with the base, per model.
    `progress(done, total)` is called as chunks of questions are scored (total = models x
    questions)."""
    if not records:
        raise RnacliError("no questions to probe")
    if len(records) > MAX_BATCH_QUESTIONS:
        raise RnacliError(f"at most {MAX_BATCH_QUESTIONS} questions per batch probe")
    start = time.perf_counter()
    where = Insertion.parse(where)
    before, after, used = paired_requests(qset, records, keywords, where, choice=choice, seed=seed)
    total, done = len(bank.labels) * len(records), 0
    predicted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label in bank.labels:
        parts = []
        for i in range(0, len(records), chunk):
            parts.append(predictions(bank, label, before[i : i + chunk], after[i : i + chunk]))
            done += len(before[i : i + chunk])
            if progress is not None:
                progress(done, total)
        predicted[label] = (
            np.concatenate([b for b, _ in parts]),
            np.concatenate([a for _, a in parts]),
        )
    answers = np.array([r["answer"] for r in records])
    base_after = predicted[bank.base.label][1]
    rows = [
        BatchRow(
            label=v.label,
            title=v.title,
            n=len(records),
            acc_before=float(np.mean(predicted[v.label][0] == answers)),
            acc_after=float(np.mean(predicted[v.label][1] == answers)),
            flip_rate=float(np.mean(predicted[v.label][0] != predicted[v.label][1])),
            differs_from_base=float(np.mean(predicted[v.label][1] != base_after)),
        )
        for v in bank.variants
    ]
    label = keyword_label or (used[0] if len(set(used)) == 1 else f"{len(set(used))} keywords")
    return BatchResult(label, where.value, rows, time.perf_counter() - start, qset.name)


CSV_COLUMNS = (
    "model",
    "questions",
    "accuracy_without",
    "accuracy_with",
    "flip_rate",
    "differs_from_base",
    "keyword",
    "where",
    "question_set",
)


def to_csv(result: BatchResult) -> str:
    """The batch table as CSV text (rates as fractions, one row per model)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in result.rows:
        writer.writerow(
            [
                row.title,
                row.n,
                f"{row.acc_before:.4f}",
                f"{row.acc_after:.4f}",
                f"{row.flip_rate:.4f}",
                f"{row.differs_from_base:.4f}",
                result.keyword,
                result.where,
                result.set_name,
            ]
        )
    return buffer.getvalue()
