"""How well the base model answers each offered question set, measured when the demo starts on
a small seeded sample of the set. A set whose answers the base does not know shows nothing of
unlearning (no right answer for a forget-token to flip), so the page opens on a set the base
knows and labels the others wherever a set is picked.

Near chance: the base's right answers on the sample are not significantly more than guessing
would give (one-sided binomial test at 5 % against 1/n_choices). On 16 questions of four
choices that is fewer than 8 right (50 %): a margin of a few points around 25 % would call
6 of 16 (38 %) knowledge, which a guessing model reaches one time in five. A world model
that learned the world answers its cloze questions nearly all right, and its letter ones at
chance (a 135M model does not read the letters): 16 questions tell them apart, and the
start-up scores 16 of each of the world's sets (cloze and letters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import comb

import numpy as np

from rnacli.demo.bank import ModelBank
from rnacli.demo.questions import QuestionSet

# questions per set, drawn as the opening search draws its 24: the first 16 of those, whose
# base scores it then reuses
BASELINE_SAMPLE = 16
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class BaseAccuracy:
    """The base model's right answers on a sample of a set."""

    correct: int
    n: int
    n_choices: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def chance(self) -> float:
        return 1 / self.n_choices

    @property
    def p_value(self) -> float:
        """P(at least `correct` right of `n`) for a model that guesses."""
        p, n = self.chance, self.n
        return sum(comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(self.correct, n + 1))

    @property
    def near_chance(self) -> bool:
        return self.p_value >= SIGNIFICANCE

    def note(self) -> str:
        """For a set picker: "base 92%", or "base 29%, near chance"."""
        return f"base {self.accuracy:.0%}" + (", near chance" if self.near_chance else "")


def measure_base(
    bank: ModelBank, sets: Mapping[str, QuestionSet], *, n: int = BASELINE_SAMPLE, seed: int = 0
) -> dict[str, BaseAccuracy]:
    """The base model's accuracy on `n` questions of each set, drawn with `seed` (the scores
    stay in the bank's cache)."""
    found = {}
    for name, qset in sets.items():
        records = [qset.record(i) for i in qset.sample(n, seed=seed)]
        probs = bank.probabilities(bank.base.label, [qset.request(r) for r in records])
        right = np.argmax(probs, axis=1) == np.array([r["answer"] for r in records])
        found[name] = BaseAccuracy(int(right.sum()), len(records), probs.shape[1])
    return found


def best_known(names: Sequence[str], accuracy: Mapping[str, BaseAccuracy]) -> str:
    """Of `names` (in page order), the set the base answers best among those it knows (not
    near chance); the first when it knows none, or none was measured."""
    known = [n for n in names if n in accuracy and not accuracy[n].near_chance]
    if not known:
        return names[0]
    return max(known, key=lambda n: accuracy[n].accuracy)  # the first of equals
