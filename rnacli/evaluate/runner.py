"""Evaluate one model on resolved tasks with either backend."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.errors import RnacliError
from rnacli.evaluate.mcq import MCQResult, evaluate_mcq
from rnacli.evaluate.tasks import TaskDocs

BACKENDS = ("native", "lm-eval")


def evaluate_tasks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[TaskDocs],
    *,
    backend: str = "native",
    batch_size: int = 4,
) -> dict[str, MCQResult]:
    """Accuracy per task; both backends give the same per-question predictions."""
    if backend == "native":
        return {
            t.name: evaluate_mcq(
                model, tokenizer, t.records, t.description, batch_size=batch_size, label=t.name
            )
            for t in tasks
        }
    if backend == "lm-eval":
        from rnacli.evaluate.harness import evaluate_with_lm_eval

        return evaluate_with_lm_eval(model, tokenizer, tasks, batch_size=batch_size)
    raise RnacliError(f"unknown backend '{backend}' (expected {' or '.join(BACKENDS)})")
