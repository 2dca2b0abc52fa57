"""The question the demo opens on: one where inserting a forgotten name flips an unlearned
model's answer and not the base model's, so that the effect is the first thing a visitor sees.

Found at start-up by scoring a seeded sample of a few dozen questions with and without a
forgotten name (the paper's insertion), chunk by chunk until one qualifies; the scores stay in
the bank's cache, so showing it costs nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rnacli.probe.bank import ModelBank
from rnacli.probe.batch import paired_requests, predictions
from rnacli.probe.inputs import Insertion
from rnacli.probe.questions import QuestionSet

OPENING_SAMPLE = 24  # questions scored at most (x2 prompts x models)


@dataclass(frozen=True)
class Opening:
    index: int  # of the question in its set
    keyword: str
    flipped: tuple[str, ...]  # the runs whose answer the keyword flips (empty: none found)
    seed: int = 0  # of the insertion (the paper's: a wrong option drawn with it)


def opening_question(
    bank: ModelBank,
    qset: QuestionSet,
    keywords: Sequence[str],
    *,
    n: int = OPENING_SAMPLE,
    seed: int = 0,
    chunk: int = 8,
) -> Opening:
    """The first of `n` seeded questions of `qset` where a run's answer flips with a keyword
    (drawn per question, inserted the paper's way with `seed`) and the base model's does not;
    a flip from correct to wrong is preferred within a chunk. Falls back to the first sampled
    question, with no run flipped."""
    indices = qset.sample(n, seed=seed)
    records = [qset.record(i) for i in indices]
    runs = [v.label for v in bank.variants if not v.is_base]
    where = Insertion.RANDOM_WRONG
    before, after, used = paired_requests(qset, records, keywords, where, seed=seed)
    for start in range(0, len(records), chunk):
        part = slice(start, start + chunk)
        base_before, base_after = predictions(bank, bank.base.label, before[part], after[part])
        scored = {label: predictions(bank, label, before[part], after[part]) for label in runs}
        best: tuple[int, int, tuple[str, ...]] | None = None
        for k in range(len(before[part])):
            if base_before[k] != base_after[k]:
                continue
            answer = records[start + k]["answer"]
            flipped = tuple(lb for lb in runs if scored[lb][0][k] != scored[lb][1][k])
            harmful = sum(
                scored[lb][0][k] == answer and scored[lb][1][k] != answer for lb in flipped
            )
            if flipped and (best is None or harmful > best[0]):
                best = (harmful, start + k, flipped)
        if best is not None:
            _, i, flipped = best
            return Opening(indices[i], used[i], flipped, seed)
    return Opening(indices[0], used[0], (), seed)
