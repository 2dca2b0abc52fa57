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
    return _percentile_interval(rates, level)


def matched_gain(
    curve_forget: Sequence[float], curve_acc: Sequence[float], forget: float, acc: float
) -> float:
    """`acc` minus the best accuracy of a plain run that forgets at least as much, a fraction.

    The curve is plain unlearning stopped at several step counts: points (forget accuracy,
    accuracy on a retain-side task). The comparison is with every plain point whose forget
    accuracy is at most `forget`, and the best of them counts: a positive gain is robustness
    that no plain run with at least the same forgetting matched, stopping earlier included
    (issue 13's matched-forgetting comparison). Linear interpolation would credit RNA where
    the curve is flat in forgetting but falls in robustness, as RMU's does once its forget
    accuracy reaches chance. nan when no plain point forgets that much.
    """
    xs = np.asarray(curve_forget, dtype=float)
    ys = np.asarray(curve_acc, dtype=float)
    eligible = xs <= forget
    if not eligible.any():
        return float("nan")
    return float(acc - ys[eligible].max())


def matched_gain_interval(
    curve_forget: Sequence,
    curve_task: Sequence,
    point_forget: Sequence,
    point_task: Sequence,
    *,
    draws: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile-bootstrap interval (low, high) of `matched_gain` of the seed means, and the
    share of draws where it is undefined (the point fell off the curve).

    `curve_forget` is [curve points, seeds, forget questions] of bools (correct or not),
    `curve_task` [curve points, seeds, task questions]; `point_forget` and `point_task` are the
    same for one RNA point ([seeds, questions]). Each draw resamples seeds and the questions of
    each task, pairing every model on the same questions and seed numbers.
    """
    cf = np.asarray(curve_forget, dtype=float)
    ct = np.asarray(curve_task, dtype=float)
    pf = np.asarray(point_forget, dtype=float)
    pt = np.asarray(point_task, dtype=float)
    if cf.ndim != 3 or ct.ndim != 3 or pf.shape != cf.shape[1:] or pt.shape != ct.shape[1:]:
        raise ValueError(
            "expected curve [points, seeds, questions] and point [seeds, questions]; got "
            f"{cf.shape}, {ct.shape}, {pf.shape}, {pt.shape}"
        )
    rng = np.random.default_rng(seed)
    seeds, n_forget, n_task = pf.shape[0], pf.shape[1], pt.shape[1]
    gains = np.empty(draws)
    for i in range(draws):
        s = rng.integers(0, seeds, seeds)
        qf = rng.integers(0, n_forget, n_forget)
        qt = rng.integers(0, n_task, n_task)
        gains[i] = matched_gain(
            cf[:, s][:, :, qf].mean(axis=(1, 2)),
            ct[:, s][:, :, qt].mean(axis=(1, 2)),
            pf[s][:, qf].mean(),
            pt[s][:, qt].mean(),
        )
    return _percentile_interval(gains, level)


def _percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float, float]:
    """(low, high) percentiles of the defined bootstrap draws, and the share that is nan."""
    undefined = float(np.isnan(draws).mean())
    if undefined == 1.0:
        return float("nan"), float("nan"), undefined
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(draws, [tail, 100 - tail])
    return float(low), float(high), undefined
