"""Representation Misdirection forget losses at layer l (paper Section 2.2).

Each takes the updated model's layer-l activations of a forget batch `z` [B, T, d] and returns
the MSE to a target that misdirects them; padding is excluded by `mask` [B, T]."""

from __future__ import annotations

import torch

from rnacli.methods.reduce import masked_mse
from rnacli.methods.registry import method_spec


def random_unit_vector(dim: int, kind: str, generator: torch.Generator) -> torch.Tensor:
    """RMU's u (uniform[0,1), normalised) or RSV's eps (N(0, I), normalised); fixed per corpus."""
    if kind == "uniform":
        v = torch.rand(dim, generator=generator, dtype=torch.float32)
    elif kind == "normal":
        v = torch.randn(dim, generator=generator, dtype=torch.float32)
    else:
        raise ValueError(f"unknown random vector kind {kind!r}")
    return v / v.norm()


def rmu_loss(
    z: torch.Tensor, u: torch.Tensor, coeff: float, mask: torch.Tensor, total: float | None = None
) -> torch.Tensor:
    """RMU: mse(z_l(x_f), c * u); `total`: the step's real forget tokens (`masked_mean`)."""
    return masked_mse(z, (coeff * u).to(z.dtype).expand_as(z), mask, total)


def adaptive_rmu_loss(
    z: torch.Tensor,
    z_ref: torch.Tensor,
    u: torch.Tensor,
    beta: float,
    mask: torch.Tensor,
    total: float | None = None,
) -> torch.Tensor:
    """Adaptive RMU: mse(z_l(x_f), beta * ||z_l^ref(x_f)||_2 * u), the norm taken per token."""
    scale = beta * z_ref.float().norm(dim=-1, keepdim=True)
    return masked_mse(z, scale * u.to(scale.dtype), mask, total)


def rsv_loss(
    z: torch.Tensor,
    z_ref: torch.Tensor,
    eps: torch.Tensor,
    coeff: float,
    mask: torch.Tensor,
    total: float | None = None,
) -> torch.Tensor:
    """RSV: mse(z_l(x_f), z_l^ref(x_f) + c * eps)."""
    return masked_mse(z, z_ref.float() + coeff * eps.to(torch.float32), mask, total)


# -- methods: each holds its loss; `passes` provides the activations -------------------------


def _vectors(kind: str, dim: int, n_corpora: int, seed: int) -> list[torch.Tensor]:
    """One fixed random direction per forget corpus, reproducible from the seed."""
    gens = [torch.Generator().manual_seed(seed * 1000 + k) for k in range(n_corpora)]
    return [random_unit_vector(dim, kind, g) for g in gens]


class _RepresentationMisdirection:
    """What RM methods share: a layer, one coefficient, one random direction per corpus."""

    family = "rm"

    @classmethod
    def from_config(cls, cfg, hidden_size: int, n_corpora: int, seed: int):
        coefficient = method_spec(cfg.name).coefficient
        return cls(cfg.layer, getattr(cfg, coefficient), hidden_size, n_corpora, seed)


class RMU(_RepresentationMisdirection):
    def __init__(self, layer: int, coeff: float, dim: int, n_corpora: int, seed: int) -> None:
        self.layer, self.coeff = layer, coeff
        self.u = _vectors("uniform", dim, n_corpora, seed)

    def forget_loss(self, passes, batch) -> torch.Tensor:
        z = passes.hidden(batch.forget, self.layer)
        seq = batch.forget
        return rmu_loss(
            z, self.u[batch.corpus].to(z.device), self.coeff, seq.counted, seq.step_tokens
        )


class AdaptiveRMU(_RepresentationMisdirection):
    """Adaptive RMU. `scale = "per-token"` (the equation): the target norm is beta x
    ||z_ref|| per token, every step. `scale = "first-batch"` (the authors' code): one scalar per
    forget corpus, beta x the mean norm of the *updated* model's activations on that corpus's
    first batch (its first step), fixed for the rest of the run and kept in checkpoints."""

    def __init__(
        self,
        layer: int,
        beta: float,
        dim: int,
        n_corpora: int,
        seed: int,
        scale: str = "per-token",
    ) -> None:
        self.layer, self.beta, self.scale = layer, beta, scale
        self.u = _vectors("uniform", dim, n_corpora, seed)
        self.scales: dict[int, float] = {}

    @classmethod
    def from_config(cls, cfg, hidden_size: int, n_corpora: int, seed: int):
        return cls(cfg.layer, cfg.beta, hidden_size, n_corpora, seed, cfg.adaptive_scale)

    def forget_loss(self, passes, batch) -> torch.Tensor:
        z = passes.hidden(batch.forget, self.layer)
        u, seq = self.u[batch.corpus].to(z.device), batch.forget
        if self.scale == "first-batch":
            if batch.corpus not in self.scales:
                norms, weights = z.detach().float().norm(dim=-1), seq.counted.float()
                mean = float((norms * weights).sum() / weights.sum().clamp_min(1))
                self.scales[batch.corpus] = self.beta * mean
            return rmu_loss(z, u, self.scales[batch.corpus], seq.counted, seq.step_tokens)
        z_ref = passes.hidden(batch.forget, self.layer, reference=True)
        return adaptive_rmu_loss(z, z_ref, u, self.beta, seq.counted, seq.step_tokens)

    def state_dict(self) -> dict:
        return {"scales": {str(k): v for k, v in self.scales.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.scales = {int(k): float(v) for k, v in state.get("scales", {}).items()}


class RSV(_RepresentationMisdirection):
    def __init__(self, layer: int, coeff: float, dim: int, n_corpora: int, seed: int) -> None:
        self.layer, self.coeff = layer, coeff
        self.eps = _vectors("normal", dim, n_corpora, seed)

    def forget_loss(self, passes, batch) -> torch.Tensor:
        z = passes.hidden(batch.forget, self.layer)
        z_ref = passes.hidden(batch.forget, self.layer, reference=True)
        eps, seq = self.eps[batch.corpus].to(z.device), batch.forget
        return rsv_loss(z, z_ref, eps, self.coeff, seq.counted, seq.step_tokens)
