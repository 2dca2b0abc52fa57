"""The one place that says what a method is. The recipe schema (`rnacli.recipe`), the planner
(`rnacli.training.plan`), the training loop and the recipe writer (`recipes/write.py`) all read
these specs, so adding a method is one class and one `register(MethodSpec(...))`.

The classes are named by import path ("module:Class") so that reading a recipe does not import
torch; `build_method` imports them when a run starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from rnacli.errors import RnacliError

Family = Literal["rm", "po"]


@dataclass(frozen=True)
class MethodSpec:
    """A method as recipes name it and as the loop, the planner and the writer need it.

    name: the recipe's `method.name`; label: the paper's name (RMU, NPO, ...);
    family: "rm" (Representation Misdirection: losses on layer-l activations, retain loss "rm")
    or "po" (Preference Optimization: losses on log-probabilities, retain loss "kl" or "mse");
    method: the class, or its "module:Class" path; it is built by `Class.from_config(cfg,
    hidden_size, n_corpora, seed)` and has `family` and `forget_loss(passes, batch)`;
    coefficient: the method key it reads ("steering_coeff" or "beta"), with `default`;
    reference_forget_pass: its forget loss runs the frozen reference on the forget batch
    (the planner counts that pass); refusals: it reads refusal sentences (`data.refusal`) as the
    preferred answers; uses_gamma: it reads `method.gamma`.
    """

    name: str
    label: str
    family: Family
    method: str | Callable[..., Any]
    coefficient: Literal["steering_coeff", "beta"] | None = None
    default: float | None = None
    reference_forget_pass: bool = False
    refusals: bool = False
    uses_gamma: bool = False

    @property
    def retain_losses(self) -> tuple[str, ...]:
        """The retain losses it accepts; the first is the default where there is one."""
        return ("rm",) if self.family == "rm" else ("kl", "mse")

    def method_class(self) -> Callable[..., Any]:
        if not isinstance(self.method, str):
            return self.method
        module, _, name = self.method.partition(":")
        return getattr(importlib.import_module(module), name)


# Retain losses: name -> "module:Class" (built with `Class.from_config(cfg)`).
RETAIN_LOSSES = {
    "rm": "rnacli.methods.retain:RepresentationRetain",
    "kl": "rnacli.methods.retain:KLRetain",
    "mse": "rnacli.methods.retain:MSERetain",
}

METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method (a test's toy method, a plug-in); a name that exists is an error."""
    if spec.name in METHODS:
        raise RnacliError(f"method '{spec.name}' is already registered")
    METHODS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    METHODS.pop(name, None)


def method_spec(name: str) -> MethodSpec:
    """The spec of `name`; RnacliError naming the known methods otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise RnacliError(f"unknown method '{name}' (known: {', '.join(METHODS)})") from None


def method_label(name: str, retain_loss: str | None) -> str:
    """The method as the paper names it: RMU (RM methods), NPO+KL, DPO+MSE, ..."""
    suffix = "" if retain_loss in (None, "rm") else f"+{retain_loss.upper()}"
    label = METHODS[name].label if name in METHODS else name
    return label + suffix


def build_method(cfg: Any, hidden_size: int, n_corpora: int, seed: int) -> Any:
    """The method object of a recipe's [method] section (`rnacli.recipe.MethodConfig`)."""
    cls = method_spec(cfg.name).method_class()
    return cls.from_config(cfg, hidden_size, n_corpora, seed)


def build_retain(cfg: Any) -> Any:
    """The retain loss object of a recipe's [method] section (rm, kl or mse)."""
    module, _, name = RETAIN_LOSSES[cfg.retain_loss].partition(":")
    return getattr(importlib.import_module(module), name).from_config(cfg)


# Paper Section 2.2 and Appendix A.4 (coefficients: c for RMU/RSV, beta for the others).
for _spec in (
    MethodSpec("rmu", "RMU", "rm", "rnacli.methods.rm:RMU", "steering_coeff", 6.5),
    MethodSpec(
        "adaptive_rmu",
        "Adaptive RMU",
        "rm",
        "rnacli.methods.rm:AdaptiveRMU",
        "beta",
        3.0,
        reference_forget_pass=True,
    ),
    MethodSpec("rsv", "RSV", "rm", "rnacli.methods.rm:RSV", "steering_coeff", 10.0, True),
    MethodSpec("npo", "NPO", "po", "rnacli.methods.po:NPO", "beta", 0.1, True),
    MethodSpec("dpo", "DPO", "po", "rnacli.methods.po:DPO", "beta", 0.1, True, refusals=True),
    MethodSpec("simnpo", "SimNPO", "po", "rnacli.methods.po:SimNPO", "beta", 0.1, uses_gamma=True),
):
    register(_spec)
