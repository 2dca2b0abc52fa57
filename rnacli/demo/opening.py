"""The question the demo opens on: one where inserting a forgotten name flips an unlearned
model's answer and not the base model's, so that the effect is the first thing a visitor sees.

Found at start-up from a seeded sample of a few dozen questions, each with a forgotten name
inserted the paper's way, as cheaply as the search allows: one unlearned run (the first
without RNA) is scored chunk by chunk; only the questions where its answer flips are scored on
the base model, one by one, until the base keeps its answer; then the other runs are scored on
that one question. The scores stay in the bank's cache, so showing the question costs nothing
more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rnacli.demo.answers import Request
from rnacli.demo.bank import ModelBank
from rnacli.demo.batch import paired_requests, predictions
from rnacli.demo.inputs import Insertion
from rnacli.demo.questions import QuestionSet

OPENING_SAMPLE = 24  # questions looked at, at most
OPENING_CHUNK = 4  # questions scored at a time on the unlearned run


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
    chunk: int = OPENING_CHUNK,
) -> Opening:
    """The first of `n` seeded questions of `qset` where the first unlearned run's answer
    flips with a keyword (drawn per question, inserted the paper's way with `seed`) and the
    base model's does not; within a chunk, a flip from correct to wrong comes first. Falls
    back to the first sampled question, with no run flipped."""
    indices = qset.sample(n, seed=seed)
    records = [qset.record(i) for i in indices]
    runs = [v for v in bank.variants if not v.is_base]
    before, after, used = paired_requests(
        qset, records, keywords, Insertion.RANDOM_WRONG, seed=seed
    )
    if runs:
        lead = next((v for v in runs if not v.rna), runs[0]).label
        for start in range(0, len(records), chunk):
            part = slice(start, start + chunk)
            was, now = predictions(bank, lead, before[part], after[part])
            flips = [k for k in range(len(was)) if was[k] != now[k]]
            # correct -> wrong first (stable: otherwise in sample order)
            flips.sort(key=lambda k: was[k] != records[start + k]["answer"])
            for k in flips:
                i = start + k
                if not _flips(bank, bank.base.label, before[i], after[i]):
                    flipped = tuple(
                        v.label for v in runs if _flips(bank, v.label, before[i], after[i])
                    )
                    return Opening(indices[i], used[i], flipped, seed)
    return Opening(indices[0], used[0], (), seed)


def _flips(bank: ModelBank, label: str, before: Request, after: Request) -> bool:
    """The model's answer to `after` differs from its answer to `before`."""
    was, now = predictions(bank, label, [before], [after])
    return bool(was[0] != now[0])
