"""Masked reductions shared by every loss: padding never counts.

Each takes an optional `total`: the count the optimizer step's loss averages over (all its
micro-batches and processes: `Seq.step_tokens`, `Seq.step_rows`). With it, a micro-batch's loss
is its share of the step's mean, and the shares add up to the same gradient however the step's
sequences are split (the gradient-accumulation fault transformers fixed in 2024). Without it,
the mean is over this batch alone.
"""

from __future__ import annotations

import torch


def masked_mean(
    values: torch.Tensor, mask: torch.Tensor, total: float | None = None
) -> torch.Tensor:
    """Mean of `values` [B, T, ...] over non-padding tokens (mask [B, T]) and trailing dims;
    `total`: the step's count of non-padding tokens instead of this batch's."""
    weights = mask.to(values.dtype)
    while weights.dim() < values.dim():
        weights = weights.unsqueeze(-1)
    per_token = values[0, 0].numel() if values.dim() > 2 else 1
    if total is None:
        return (values * weights).sum() / (weights.sum() * per_token).clamp_min(1)
    return (values * weights).sum() / (max(total, 1) * per_token)


def masked_mse(
    x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, total: float | None = None
) -> torch.Tensor:
    """Mean squared error over every element of the non-padding tokens (x, target [B, T, d])."""
    return masked_mean((x.float() - target.float()) ** 2, mask, total)


def mean_over(values: torch.Tensor, total: float | None = None) -> torch.Tensor:
    """values.sum() / total: the mean of per-token or per-sequence values [N] within the step
    (`total` = the step's count), or over these N alone."""
    return values.sum() / (max(total, 1) if total is not None else max(values.numel(), 1))
