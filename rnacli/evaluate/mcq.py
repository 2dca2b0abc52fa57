"""The native multiple-choice evaluator: lm-eval's zero-shot prompt and scoring, batched.

lm-eval scores each choice as the log-likelihood of its continuation after the context: the
letters " A".." D" after the lettered prompt, or (cloze) the choice text after the question.
`scoring.py` computes those numbers with one row per question. Predictions equal lm-eval's on
the same model; a test holds us to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.data.records import QARecord
from rnacli.evaluate.metrics import accuracy, accuracy_stderr
from rnacli.evaluate.prompts import CONTINUATIONS, scoring_request
from rnacli.evaluate.scoring import ScoringStats, continuation_loglikelihoods
from rnacli.runtime.distributed import SINGLE, Processes


@dataclass
class MCQResult:
    acc: float
    stderr: float
    predictions: list[int]
    answers: list[int]
    loglikelihoods: np.ndarray  # [n_questions, n_choices]

    @property
    def n(self) -> int:
        return len(self.answers)


@torch.no_grad()
def choice_loglikelihoods(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    contexts: Sequence[str],
    continuations: Sequence[str] | Sequence[Sequence[str]] = CONTINUATIONS,
    *,
    batch_size: int = 16,
    description: str = "scoring",
    progress: bool = True,
    processes: Processes = SINGLE,
    stats: ScoringStats | None = None,
) -> np.ndarray:
    """Log-likelihood of every continuation after every context: [n_contexts, n_choices].

    `continuations` is one list for all contexts (" A".." D") or one list per context (cloze
    scoring, where the choices themselves are the continuations). See `scoring.py` for how."""
    if continuations and isinstance(continuations[0], str):
        continuations = [continuations] * len(contexts)
    return continuation_loglikelihoods(
        model,
        tokenizer,
        contexts,
        continuations,  # type: ignore[arg-type]
        batch_size=batch_size,
        description=description,
        progress=progress,
        processes=processes,
        stats=stats,
    )


def task_inputs(
    records: Sequence[QARecord], description: str, scoring: str = "mcq"
) -> tuple[list[str], list[list[str]]]:
    """(contexts, each context's continuations) that lm-eval scores for these questions."""
    requests = [scoring_request(r, description, scoring) for r in records]
    return [context for context, _ in requests], [list(options) for _, options in requests]


def evaluate_mcq(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[QARecord],
    description: str,
    *,
    batch_size: int = 16,
    label: str = "scoring",
    scoring: str = "mcq",
    progress: bool = True,
    processes: Processes = SINGLE,
    stats: ScoringStats | None = None,
) -> MCQResult:
    """Zero-shot accuracy as lm-eval computes it (argmax log-likelihood, first on ties).

    `mcq` scores the letters " A".." D" after the lettered prompt; `cloze` scores each choice
    itself as the continuation of the question (the choices are not shown)."""
    contexts, continuations = task_inputs(records, description, scoring)
    lls = choice_loglikelihoods(
        model,
        tokenizer,
        contexts,
        continuations,
        batch_size=batch_size,
        description=label,
        progress=progress,
        processes=processes,
        stats=stats,
    )
    predictions = [int(p) for p in np.argmax(lls, axis=1)]
    answers = [r["answer"] for r in records]
    correct = [p == a for p, a in zip(predictions, answers, strict=True)]
    return MCQResult(accuracy(correct), accuracy_stderr(correct), predictions, answers, lls)
