"""Accuracy with its standard error, and the paper's reduction and recovery rates."""

from __future__ import annotations

import math
from collections.abc import Sequence


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
