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
    """What PO methods share: beta, and how the forget text's likelihood is read (`nll`):

    - "sequence-sum" (the equations): log pi(y|x) per sequence [B], the sum of its completion
      tokens' log-probs;
    - "pooled-mean" (the authors' code, HF `labels=input_ids`): one value per batch [1], minus
      the mean token NLL pooled over the batch's scored tokens (its "log pi / |y|").

    A pooled value stands for its batch: within a step of several batches (micro-batches,
    processes) each batch weighs as one, as if the authors had run it on its own."""

    family = "po"

    def __init__(self, beta: float, nll: str = "sequence-sum") -> None:
        self.beta, self.nll = beta, nll

    @classmethod
    def from_config(cls, cfg, hidden_size: int, n_corpora: int, seed: int):
        return cls(cfg.beta, cfg.nll)

    def log_likelihood(self, passes, seq, reference: bool = False) -> torch.Tensor:
        logp = passes.sequence_logprob(seq, reference=reference)
        if self.nll == "sequence-sum":
            return logp
        return (logp.sum() / seq.target_mask[:, 1:].sum().clamp_min(1)).reshape(1)

    def rows(self, seq) -> float | None:
        """What the loss's mean divides by within the step: its sequences, or (pooled) its
        batches."""
        if seq.step_rows is None or self.nll == "sequence-sum":
            return seq.step_rows
        return seq.step_rows / seq.input_ids.shape[0]

    def scored_length(self, seq) -> torch.Tensor:
        """|y| per sequence [B] (sequence-sum), or 1 for a pooled mean (already per token)."""
        if self.nll == "pooled-mean":
            return torch.ones(1, device=seq.input_ids.device)
        return seq.target_mask[:, 1:].sum(-1)


class NPO(_PreferenceOptimization):
    def forget_loss(self, passes, batch) -> torch.Tensor:
        seq = batch.forget
        logp = self.log_likelihood(passes, seq)
        logp_ref = self.log_likelihood(passes, seq, reference=True)
        return npo_loss(logp, logp_ref, self.beta, self.rows(seq))


class DPO(_PreferenceOptimization):
    """DPO with a refusal as the preferred answer. `reference = "authors"` reproduces the
    authors' code, whose reference log-ratio takes the updated model's refusal term
    (`idk_current_loss - unlearn_ref_loss`): the refusal terms cancel and the loss is exactly
    their NPO on the forget text (no gradient reaches the refusal)."""

    def __init__(self, beta: float, nll: str = "sequence-sum", reference: str = "paper") -> None:
        super().__init__(beta, nll)
        self.reference = reference

    @classmethod
    def from_config(cls, cfg, hidden_size: int, n_corpora: int, seed: int):
        return cls(cfg.beta, cfg.nll, cfg.dpo_reference)

    def forget_loss(self, passes, batch) -> torch.Tensor:
        win, lose = batch.refusal, batch.forget
        logp_lose = self.log_likelihood(passes, lose)
        logp_lose_ref = self.log_likelihood(passes, lose, reference=True)
        if self.reference == "authors":
            return npo_loss(logp_lose, logp_lose_ref, self.beta, self.rows(lose))
        return dpo_loss(
            self.log_likelihood(passes, win),
            self.log_likelihood(passes, win, reference=True),
            logp_lose,
            logp_lose_ref,
            self.beta,
            self.rows(lose),
        )


class SimNPO(_PreferenceOptimization):
    def __init__(self, beta: float, gamma: float, nll: str = "sequence-sum") -> None:
        super().__init__(beta, nll)
        self.gamma = gamma

    @classmethod
    def from_config(cls, cfg, hidden_size: int, n_corpora: int, seed: int):
        return cls(cfg.beta, cfg.gamma, cfg.nll)

    def forget_loss(self, passes, batch) -> torch.Tensor:
        seq = batch.forget
        logp = self.log_likelihood(passes, seq)
        return simnpo_loss(logp, self.scored_length(seq), self.beta, self.gamma, self.rows(seq))
