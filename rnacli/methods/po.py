"""Preference Optimization forget losses on sequence log-probabilities (paper Section 2.2).

Sequence log-prob `log pi(y|x)` is the sum of the token log-probs of y (padding and the prompt
x excluded); `sequence_logprob` computes it from logits. The losses take [B] tensors and
return their mean: over these B sequences, or over the optimizer step's `rows` sequences (all
its micro-batches and processes: `Seq.step_rows`), so that a split step adds up to one mean."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnacli.methods.reduce import mean_over


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position: logits [..., V], targets [...] -> [...] (float32)."""
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def sequence_logprob(
    logits: torch.Tensor, input_ids: torch.Tensor, target_mask: torch.Tensor
) -> torch.Tensor:
    """Sum of log p(token t | tokens < t) over the tokens where target_mask [B, T] is 1.

    Position t's logits predict token t+1, so the first token is never scored."""
    lp = token_logprobs(logits[:, :-1], input_ids[:, 1:])
    return (lp * target_mask[:, 1:].to(lp.dtype)).sum(-1)


def _scaled_logsigmoid(x: torch.Tensor, beta: float, rows: float | None) -> torch.Tensor:
    """-(2/beta) log sigmoid(x), averaged over the sequences: the shape every PO loss shares."""
    return mean_over(-(2.0 / beta) * F.logsigmoid(x), rows)


def npo_loss(
    logp: torch.Tensor, logp_ref: torch.Tensor, beta: float, rows: float | None = None
) -> torch.Tensor:
    """NPO: -(2/beta) logsigmoid(-beta (log pi(y_f|x_f) - log pi_ref(y_f|x_f)))."""
    return _scaled_logsigmoid(-beta * (logp - logp_ref), beta, rows)


def dpo_loss(
    logp_win: torch.Tensor,
    logp_win_ref: torch.Tensor,
    logp_lose: torch.Tensor,
    logp_lose_ref: torch.Tensor,
    beta: float,
    rows: float | None = None,
) -> torch.Tensor:
    """DPO with the refusal as the preferred answer and the forget text as the rejected one."""
    margin = (logp_win - logp_win_ref) - (logp_lose - logp_lose_ref)
    return _scaled_logsigmoid(beta * margin, beta, rows)


def simnpo_loss(
    logp: torch.Tensor,
    length: torch.Tensor,
    beta: float,
    gamma: float,
    rows: float | None = None,
) -> torch.Tensor:
    """SimNPO: -(2/beta) logsigmoid(-(beta/|y_f|) log pi(y_f|x_f) - gamma); no reference."""
    normalised = -(beta / length.clamp_min(1).to(logp.dtype)) * logp - gamma
    return _scaled_logsigmoid(normalised, beta, rows)


# -- methods: each holds its loss; `passes` provides sequence log-probs ----------------------


class _PreferenceOptimization:
    family = "po"

    def __init__(self, beta: float) -> None:
        self.beta = beta

    @classmethod
    def from_config(cls, cfg, hidden_size: int, n_corpora: int, seed: int):
        return cls(cfg.beta)


class NPO(_PreferenceOptimization):
    def forget_loss(self, passes, batch) -> torch.Tensor:
        logp = passes.sequence_logprob(batch.forget)
        logp_ref = passes.sequence_logprob(batch.forget, reference=True)
        return npo_loss(logp, logp_ref, self.beta, batch.forget.step_rows)


class DPO(_PreferenceOptimization):
    def forget_loss(self, passes, batch) -> torch.Tensor:
        win, lose = batch.refusal, batch.forget
        return dpo_loss(
            passes.sequence_logprob(win),
            passes.sequence_logprob(win, reference=True),
            passes.sequence_logprob(lose),
            passes.sequence_logprob(lose, reference=True),
            self.beta,
            lose.step_rows,
        )


class SimNPO(_PreferenceOptimization):
    def __init__(self, beta: float, gamma: float) -> None:
        self.beta, self.gamma = beta, gamma

    @classmethod
    def from_config(cls, cfg, hidden_size: int, n_corpora: int, seed: int):
        return cls(cfg.beta, cfg.gamma)

    def forget_loss(self, passes, batch) -> torch.Tensor:
        logp = passes.sequence_logprob(batch.forget)
        length = batch.forget.target_mask[:, 1:].sum(-1)  # scored tokens of y_f
        return simnpo_loss(logp, length, self.beta, self.gamma, batch.forget.step_rows)
