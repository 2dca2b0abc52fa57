"""The native multiple-choice evaluator: lm-eval's zero-shot prompt and scoring, batched.

lm-eval scores each choice as the log-likelihood of the continuation " A".." D" after the
context. Those are single tokens for nearly every tokenizer, and then all four are read from
one forward pass over the context (lm-eval runs the same context once per choice). Where a
tokenizer splits them differently, each choice gets its own sequence, exactly as lm-eval does.
Predictions equal lm-eval's on the same model; a test holds us to it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.data.encoding import encode_pair
from rnacli.data.records import QARecord
from rnacli.evaluate.metrics import accuracy, accuracy_stderr
from rnacli.evaluate.prompts import CONTINUATIONS, scoring_request
from rnacli.progress import progress_bar


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


@dataclass
class _Request:
    question: int
    choices: tuple[int, ...]  # which choices this sequence scores
    tokens: list[int]  # model input
    targets: list[list[int]]  # per choice: continuation tokens, scored at the last positions


def _requests(
    tokenizer: PreTrainedTokenizerBase,
    contexts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    max_length: int,
) -> list[_Request]:
    requests = []
    for q, (context, options) in enumerate(zip(contexts, continuations, strict=True)):
        pairs = [encode_pair(tokenizer, context, c) for c in options]
        ctx = pairs[0][0]
        if all(len(cont) == 1 and c == ctx for c, cont in pairs):
            tokens = ctx[-max_length:]
            requests.append(
                _Request(q, tuple(range(len(pairs))), tokens, [cont for _, cont in pairs])
            )
        else:
            for k, (c, cont) in enumerate(pairs):
                tokens = (c + cont)[-(max_length + 1) :][:-1]
                requests.append(_Request(q, (k,), tokens, [cont]))
    return requests


def _accepts_logits_to_keep(model: PreTrainedModel) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


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
) -> np.ndarray:
    """Log-likelihood of every continuation after every context: [n_contexts, n_choices].

    `continuations` is one list for all contexts (" A".." D") or one list per context (cloze
    scoring, where the choices themselves are the continuations)."""
    device = next(model.parameters()).device
    max_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    if continuations and isinstance(continuations[0], str):
        continuations = [continuations] * len(contexts)
    n_choices = len(continuations[0]) if continuations else 0
    if any(len(c) != n_choices for c in continuations):
        raise ValueError("every context needs the same number of continuations")
    requests = _requests(tokenizer, contexts, continuations, max_length)
    # Longest first (as lm-eval): the first batch shows at once whether memory suffices.
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i].tokens))
    out = np.zeros((len(contexts), n_choices), dtype=np.float64)
    keep = _accepts_logits_to_keep(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with progress_bar(description, total=len(contexts), show=progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = [requests[i] for i in order[start : start + batch_size]]
            width = max(len(r.tokens) for r in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, r in enumerate(batch):  # right padding: real tokens keep their positions
                ids[row, : len(r.tokens)] = torch.tensor(r.tokens)
                mask[row, : len(r.tokens)] = 1
            # Only the positions that predict continuation tokens need the LM head.
            needed = sorted(
                {len(r.tokens) - j for r in batch for t in r.targets for j in range(1, len(t) + 1)}
            )
            kwargs = {"logits_to_keep": torch.tensor(needed)} if keep else {}
            logits = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs
            ).logits
            if not keep:
                logits = logits[:, needed]
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            column = {pos: k for k, pos in enumerate(needed)}
            for row, r in enumerate(batch):
                for choice, target in zip(r.choices, r.targets, strict=True):
                    first = len(r.tokens) - len(target)
                    out[r.question, choice] = sum(
                        logprobs[row, column[first + j], tok].item() for j, tok in enumerate(target)
                    )
            done = len({r.question for r in batch if r.choices[-1] == n_choices - 1})
            bar.advance(bar.task_ids[0], done)
    return out


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
) -> MCQResult:
    """Zero-shot accuracy as lm-eval computes it (argmax log-likelihood, first on ties).

    `mcq` scores the letters " A".." D" after the lettered prompt; `cloze` scores each choice
    itself as the continuation of the question (the choices are not shown)."""
    requests = [scoring_request(r, description, scoring) for r in records]
    contexts = [context for context, _ in requests]
    continuations = [list(options) for _, options in requests]
    lls = choice_loglikelihoods(
        model,
        tokenizer,
        contexts,
        continuations,
        batch_size=batch_size,
        description=label,
        progress=progress,
    )
    predictions = [int(p) for p in np.argmax(lls, axis=1)]
    answers = [r["answer"] for r in records]
    correct = [p == a for p, a in zip(predictions, answers, strict=True)]
    return MCQResult(accuracy(correct), accuracy_stderr(correct), predictions, answers, lls)
