"""Accuracy with its standard error, and the paper's reduction and recovery rates."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def accuracy(correct: Sequence[bool]) -> float:
    return sum(correct) / len(correct) if correct else float("nan")


def accuracy_stderr(correct: Sequence[bool]) -> float:
    """lm-eval's `mean_stderr`: sample std (ddof=1) / sqrt(n)."""
    n = len(correct)
    if n < 2:
        return float("nan")
    mean = accuracy(correct)
    var = sum((c - mean) ** 2 for c in correct) / (n - 1)
    return math.sqrt(var / n)


def reduction_rate(base: float, unlearned: float) -> float:
    """(Acc_base - Acc_unlearned) / Acc_base (paper eq. 14), as a fraction."""
    return (base - unlearned) / base if base else float("nan")


def recovery_rate(base: float, unlearned: float, rna: float) -> float:
    """(Acc_rna - Acc_unlearned) / (Acc_base - Acc_unlearned) (paper eq. 15), as a fraction.

    Undefined (nan) when unlearning did not lower the accuracy: there is nothing to recover.
    """
    drop = base - unlearned
    return (rna - unlearned) / drop if drop > 0 else float("nan")


def recovery_interval(
    base: Sequence[bool],
    plain: Sequence[Sequence[bool]],
    rna: Sequence[Sequence[bool]],
    *,
    draws: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile-bootstrap interval (low, high) of the recovery rate of the seed means, and the
    share of draws where it is undefined (no drop to recover).

    `base` holds one bool per question (correct or not), `plain` and `rna` one row per seed
    over the same questions. Each draw resamples seeds and questions together, pairing every
    model on the same questions, so the interval carries both training and question noise.
    """
    b = np.asarray(base, dtype=float)
    p = np.asarray(plain, dtype=float)
    r = np.asarray(rna, dtype=float)
    if p.ndim != 2 or p.shape != r.shape or p.shape[1] != b.shape[0]:
        raise ValueError(
            f"expected base [questions] and plain, rna [seeds, questions]; got "
            f"{b.shape}, {p.shape}, {r.shape}"
        )
    rng = np.random.default_rng(seed)
    seeds, questions = p.shape
    rates = np.empty(draws)
    for i in range(draws):
        q = rng.integers(0, questions, questions)
        s = rng.integers(0, seeds, seeds)
        rates[i] = recovery_rate(b[q].mean(), p[s][:, q].mean(), r[s][:, q].mean())
    undefined = float(np.isnan(rates).mean())
    if undefined == 1.0:
        return float("nan"), float("nan"), undefined
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(rates, [tail, 100 - tail])
    return float(low), float(high), undefined
