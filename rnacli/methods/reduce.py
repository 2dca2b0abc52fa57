"""Masked reductions shared by every loss: padding never counts."""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` [B, T, ...] over non-padding tokens (mask [B, T]) and trailing dims."""
    weights = mask.to(values.dtype)
    while weights.dim() < values.dim():
        weights = weights.unsqueeze(-1)
    per_token = values[0, 0].numel() if values.dim() > 2 else 1
    return (values * weights).sum() / (weights.sum() * per_token).clamp_min(1)


def masked_mse(x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element of the non-padding tokens."""
    return masked_mean((x.float() - target.float()) ** 2, mask)
