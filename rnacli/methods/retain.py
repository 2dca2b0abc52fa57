"""Retain losses: keep the updated model close to the frozen reference on retain text.

RM methods compare layer-l activations; PO methods compare next-token distributions, either by
KL(pi_ref || pi) or by the MSE of log-probabilities. With RNA, the noise rides in the retain
pass of the side it names (`rnacli.methods.rna`): the reference's (the target) or the updated
model's."""

from __future__ import annotations

import torch

from rnacli.methods.reduce import masked_mse, mean_over
from rnacli.methods.rna import noise_for


def rm_retain_loss(
    z: torch.Tensor, z_ref: torch.Tensor, mask: torch.Tensor, total: float | None = None
) -> torch.Tensor:
    """mse(z_l(x_r), z_l^ref(x_r)) over the non-padding tokens (`total`: the step's count)."""
    return masked_mse(z, z_ref, mask, total)


def token_kl(logits: torch.Tensor, logits_ref: torch.Tensor) -> torch.Tensor:
    """KL(pi_ref || pi) per token, summed over the vocabulary's support: [..., V] -> [...].

    Words the reference gives probability 0 (logit -inf: a masked vocabulary) add nothing
    (0 log 0 = 0), where a plain p (log p - log q) would be NaN."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    logp_ref = torch.log_softmax(logits_ref.float(), dim=-1)
    p_ref = logp_ref.exp()
    terms = p_ref * (logp_ref - logp)
    return torch.where(p_ref > 0, terms, torch.zeros_like(terms)).sum(-1)


def token_logprob_mse(logits: torch.Tensor, logits_ref: torch.Tensor) -> torch.Tensor:
    """Squared error of log-probabilities per token, averaged over the vocabulary's entries
    that are finite in both (a masked word, logit -inf, has no finite log-probability)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    logp_ref = torch.log_softmax(logits_ref.float(), dim=-1)
    finite = torch.isfinite(logp) & torch.isfinite(logp_ref)
    diff = torch.where(finite, logp - logp_ref, torch.zeros_like(logp))
    return (diff**2).sum(-1) / finite.sum(-1).clamp_min(1)


# -- retain losses as used by the loop; with RNA, `noise` rides in one side's retain pass -----


class RepresentationRetain:
    """RM retain loss: mse(z_l(x_r), z_l^ref(x_r)) at the unlearn layer."""

    def __init__(self, layer: int) -> None:
        self.layer = layer

    @classmethod
    def from_config(cls, cfg) -> RepresentationRetain:
        return cls(cfg.layer)

    def loss(self, passes, seq, noise=None) -> torch.Tensor:
        z = passes.hidden(seq, self.layer, noise=noise_for(noise, reference=False))
        z_ref = passes.hidden(seq, self.layer, reference=True, noise=noise_for(noise, True))
        return rm_retain_loss(z, z_ref, seq.counted, seq.step_tokens)


class _TokenRetain:
    """A PO retain loss: the mean over real retain tokens of `per_token(logits, ref_logits)`
    (`passes.token_values` computes it by chunks of tokens)."""

    per_token: staticmethod

    @classmethod
    def from_config(cls, cfg):
        return cls()

    def loss(self, passes, seq, noise=None) -> torch.Tensor:
        return mean_over(passes.token_values(seq, self.per_token, noise), seq.step_tokens)


class KLRetain(_TokenRetain):
    """KL(pi_ref(.|x_r) || pi(.|x_r)) per real retain token, averaged."""

    per_token = staticmethod(token_kl)


class MSERetain(_TokenRetain):
    """mse(log pi(.|x_r), log pi_ref(.|x_r)) per real retain token, averaged."""

    per_token = staticmethod(token_logprob_mse)
