"""Scoring for attacks: per-question correctness from the evaluator, and the share of the
forgotten accuracy that an attack brought back, with its bootstrap interval."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from rnacli.evaluate.metrics import recovery_interval, recovery_rate
from rnacli.evaluate.runner import evaluate_tasks
from rnacli.evaluate.tasks import TaskDocs

Scores = dict[str, dict[str, Any]]  # task -> {"n", "acc", "correct": [0/1 per question]}

# Scores of one model on one set of questions, kept for the process: `rnacli attack all` over
# several runs of one base scores the base (plain and quantized) once, not once per attack.
_REMEMBERED: dict[str, Scores] = {}


def score(model, tokenizer, tasks: Sequence[TaskDocs], batch_size: int) -> Scores:
    """Accuracy and per-question correctness (1/0, in the task's question order) of `model`
    on `tasks`, through the native evaluator (`rnacli eval`'s numbers)."""
    results = evaluate_tasks(model, tokenizer, list(tasks), batch_size=batch_size)
    out = {}
    for name, result in results.items():
        correct = [int(p == a) for p, a in zip(result.predictions, result.answers, strict=True)]
        out[name] = {"n": result.n, "acc": result.acc, "correct": correct}
    return out


def remembered(model: str, how: str, tasks: Sequence[TaskDocs], compute: Callable[[], Scores]):
    """`compute()`'s scores of `model` loaded `how` (fp32, 8bit, 4bit-nf4) on `tasks`, or the
    ones this process computed before for the same model, loading and questions."""
    key = json.dumps([model, how, [(t.name, t.source, t.indices) for t in tasks]])
    if key not in _REMEMBERED:
        _REMEMBERED[key] = compute()
    return _REMEMBERED[key]


def pooled(scores: Scores, tasks: Sequence[TaskDocs]) -> list[int]:
    """The correctness of every question of `tasks`, one list (a pooled forget set)."""
    return [c for t in tasks for c in scores[t.name]["correct"]]


def _mean(values: Sequence[int]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _number(value: float) -> float | None:
    """JSON has no NaN: an undefined share is null."""
    return None if math.isnan(value) else round(value, 6)


def recovery(
    base: Sequence[int], unlearned: Sequence[int], attacked: Sequence[int], *, seed: int = 0
) -> dict[str, float | None]:
    """The share of the forgotten accuracy that came back, `(acc_attacked - acc_unlearned) /
    (acc_base - acc_unlearned)` (the form of Dang et al.'s recovery rate, eq. 15), over the
    same questions: 0 = still forgotten, 1 = back to the base. Its 95 % interval is the
    percentile bootstrap over questions (`recovery_interval`, paired). Fractions; None where
    unlearning lowered nothing (no drop to recover)."""
    low, high, _ = recovery_interval(base, [unlearned], [attacked], seed=seed)
    acc = {k: _mean(v) for k, v in (("base", base), ("unlearned", unlearned), ("after", attacked))}
    return {
        "acc_base": _number(acc["base"]),
        "acc_unlearned": _number(acc["unlearned"]),
        "acc_after": _number(acc["after"]),
        "recovery": _number(recovery_rate(acc["base"], acc["unlearned"], acc["after"])),
        "low": _number(low),
        "high": _number(high),
        "n": len(base),
    }


def accuracies(scores: Scores) -> dict[str, float]:
    """task -> accuracy (a fraction), for tables."""
    return {name: s["acc"] for name, s in scores.items()}
