"""One micro-batch of an unlearning step: forget loss + alpha * retain loss, and its backward.

With `split` (the default, `train.split_backward`), the forget loss is backpropagated before
the retain pass runs, so the activations autograd keeps for the two passes never coexist: the
peak holds one pass's activations instead of both (for PO methods, which keep every layer above
the trainable ones, that is most of a step's memory). The gradient is the same: the gradient of
a sum is the sum of the gradients, accumulated into `.grad` by the second backward, with the same
scale factors applied in the same order (tests/test_step.py compares the two).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from rnacli.data.batches import StepBatch
from rnacli.methods.rna import Noise
from rnacli.training.passes import Passes

# Logits per LM-head chunk at most. A chunk of the KL/MSE retain loss holds about 28 bytes per
# logit (two logit tensors and five fp32 terms): 2^24 logits are ~0.45 GiB, whatever the
# vocabulary (1024 tokens of SmolLM2's 49,152 words would be 1.3 GiB, more than its activations).
HEAD_CHUNK_VALUES = 1 << 24


def head_chunk_tokens(logits_chunk: int, vocab: int) -> int | None:
    """Tokens per LM-head chunk: `train.logits_chunk`, capped at HEAD_CHUNK_VALUES / vocab;
    None when chunking is off (logits_chunk = 0)."""
    if logits_chunk <= 0:
        return None
    return max(1, min(logits_chunk, HEAD_CHUNK_VALUES // max(vocab, 1)))


def set_step_totals(
    batches: list[StepBatch], all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> None:
    """Tell each sequence batch the optimizer step's count of real tokens and sequences in its
    role (forget, retain, refusal) over all micro-batches, summed over processes by
    `all_reduce`; the losses divide by these (`rnacli.methods.reduce`), so the step's gradient
    is the same whether its sequences come as one batch, as micro-batches or over processes."""
    roles = ("forget", "retain", "refusal")
    counts = torch.zeros(len(roles), 2, dtype=torch.float64)
    for batch in batches:
        for i, role in enumerate(roles):
            if (seq := getattr(batch, role)) is not None:
                counts[i, 0] += float(seq.counted.sum())
                counts[i, 1] += seq.input_ids.shape[0]
    if all_reduce is not None:
        counts = all_reduce(counts)
    for batch in batches:
        for i, role in enumerate(roles):
            if (seq := getattr(batch, role)) is not None:
                seq.step_tokens, seq.step_rows = float(counts[i, 0]), float(counts[i, 1])


def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def unlearning_loss(
    method, retain, passes: Passes, batch, alpha: float, noise: Noise | None
) -> tuple[torch.Tensor, dict[str, float]]:
    """forget loss + alpha * retain loss; RNA's noise rides in the retain reference pass."""
    forget_loss = method.forget_loss(passes, batch)
    retain_loss = retain.loss(passes, batch.retain, noise=noise)
    loss = forget_loss + alpha * retain_loss
    return loss, {
        "loss": loss.item(),
        "forget_loss": forget_loss.item(),
        "retain_loss": retain_loss.item(),
    }


def unlearning_backward(
    method,
    retain,
    passes: Passes,
    batch,
    alpha: float,
    noise: Noise | None,
    *,
    accum: int = 1,
    split: bool = True,
    autocast: AbstractContextManager | None = None,
    run_forward: Callable[[Callable[[], Any]], Any] = _call,
) -> dict[str, float]:
    """Backpropagate (forget + alpha * retain) / accum into the trainable tensors' `.grad`;
    return the loss values. `autocast` wraps the forward passes only (not the backward);
    `run_forward(fn)` runs each forward computation (memory measurements wrap it in a module
    for torch's MemTracker, which must not see a backward inside a forward)."""
    autocast = autocast or nullcontext()
    if not split:
        with autocast:
            loss, values = run_forward(
                lambda: unlearning_loss(method, retain, passes, batch, alpha, noise)
            )
        (loss / accum).backward()
        return values
    with autocast:
        forget_loss = run_forward(lambda: method.forget_loss(passes, batch))
    (forget_loss / accum).backward()
    # the forget batches' cached shared prefixes are not needed by the retain pass
    for seq in (batch.forget, batch.refusal):
        if seq is not None:
            seq.cache.clear()
    with autocast:
        retain_loss = run_forward(lambda: retain.loss(passes, batch.retain, noise=noise))
    weighted = alpha * retain_loss
    (weighted / accum).backward()
    # the same float32 sum the joint path logs
    loss = forget_loss.detach() + weighted.detach()
    return {
        "loss": loss.item(),
        "forget_loss": forget_loss.item(),
        "retain_loss": retain_loss.item(),
    }
