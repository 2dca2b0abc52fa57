"""Unlearning methods. Each method is a small class holding its forget loss (`rm.py`, `po.py`);
retain losses live in `retain.py`; masked reductions shared by all in `reduce.py`.

Adding a method: write its loss as a pure function of tensors, a class with `family` and
`forget_loss(passes, batch)`, and register it in `build_method`.
"""

from __future__ import annotations

from rnacli.errors import RnacliError
from rnacli.methods.po import DPO, NPO, SimNPO
from rnacli.methods.retain import KLRetain, MSERetain, RepresentationRetain
from rnacli.methods.rm import RMU, RSV, AdaptiveRMU

RM_METHODS = ("rmu", "adaptive_rmu", "rsv")
PO_METHODS = ("npo", "dpo", "simnpo")
METHODS = RM_METHODS + PO_METHODS


def build_method(cfg, hidden_size: int, n_corpora: int, seed: int):
    """The method object of a recipe's [method] section."""
    if cfg.name == "rmu":
        return RMU(cfg.layer, cfg.steering_coeff, hidden_size, n_corpora, seed)
    if cfg.name == "adaptive_rmu":
        return AdaptiveRMU(cfg.layer, cfg.beta, hidden_size, n_corpora, seed)
    if cfg.name == "rsv":
        return RSV(cfg.layer, cfg.steering_coeff, hidden_size, n_corpora, seed)
    if cfg.name == "npo":
        return NPO(cfg.beta)
    if cfg.name == "dpo":
        return DPO(cfg.beta)
    if cfg.name == "simnpo":
        return SimNPO(cfg.beta, cfg.gamma)
    raise RnacliError(f"unknown method '{cfg.name}' (known: {', '.join(METHODS)})")


def build_retain(cfg):
    """The retain loss of a recipe's [method] section (rm, kl or mse)."""
    if cfg.retain_loss == "rm":
        return RepresentationRetain(cfg.layer)
    if cfg.retain_loss == "kl":
        return KLRetain()
    if cfg.retain_loss == "mse":
        return MSERetain()
    raise RnacliError(f"unknown retain loss '{cfg.retain_loss}' (expected rm, kl or mse)")
