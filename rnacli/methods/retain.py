"""Retain losses: keep the updated model close to the frozen reference on retain text.

RM methods compare layer-l activations; PO methods compare next-token distributions, either by
KL(pi_ref || pi) or by the MSE of log-probabilities. With RNA, the noise rides in the retain
pass of the side it names (`rnacli.methods.rna`): the reference's (the target) or the updated
model's."""

from __future__ import annotations

import torch

from rnacli.methods.reduce import masked_mean, masked_mse
from rnacli.methods.rna import noise_for


def rm_retain_loss(z: torch.Tensor, z_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mse(z_l(x_r), z_l^ref(x_r)) over the non-padding tokens."""
    return masked_mse(z, z_ref, mask)


def token_kl(logits: torch.Tensor, logits_ref: torch.Tensor) -> torch.Tensor:
    """KL(pi_ref || pi) per token, summed over the vocabulary: [..., V] -> [...]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    logp_ref = torch.log_softmax(logits_ref.float(), dim=-1)
    return (logp_ref.exp() * (logp_ref - logp)).sum(-1)


def token_logprob_mse(logits: torch.Tensor, logits_ref: torch.Tensor) -> torch.Tensor:
    """Squared error of log-probabilities per token, averaged over the vocabulary."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    logp_ref = torch.log_softmax(logits_ref.float(), dim=-1)
    return ((logp - logp_ref) ** 2).mean(-1)


def kl_retain_loss(
    logits: torch.Tensor, logits_ref: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """KL retain loss: mean over non-padding tokens of KL(pi_ref(.|x_r) || pi(.|x_r))."""
    return masked_mean(token_kl(logits, logits_ref), mask)


def mse_retain_loss(
    logits: torch.Tensor, logits_ref: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """MSE retain loss: mse(log_softmax(logits), log_softmax(logits_ref)) over non-pad tokens."""
    return masked_mean(token_logprob_mse(logits, logits_ref), mask)


# -- retain losses as used by the loop; with RNA, `noise` rides in one side's retain pass -----


class RepresentationRetain:
    def __init__(self, layer: int) -> None:
        self.layer = layer

    @classmethod
    def from_config(cls, cfg) -> RepresentationRetain:
        return cls(cfg.layer)

    def loss(self, passes, seq, noise=None) -> torch.Tensor:
        z = passes.hidden(seq, self.layer, noise=noise_for(noise, reference=False))
        z_ref = passes.hidden(seq, self.layer, reference=True, noise=noise_for(noise, True))
        return rm_retain_loss(z, z_ref, seq.attention_mask)


class _TokenRetain:
    @classmethod
    def from_config(cls, cfg):
        return cls()


class KLRetain(_TokenRetain):
    def loss(self, passes, seq, noise=None) -> torch.Tensor:
        return passes.token_retain(seq, token_kl, noise)


class MSERetain(_TokenRetain):
    def loss(self, passes, seq, noise=None) -> torch.Tensor:
        return passes.token_retain(seq, token_logprob_mse, noise)
