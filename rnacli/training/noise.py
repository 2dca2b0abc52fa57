"""RNA's noise in a run: how large it is per layer (fixed before the first step) and the
generator of each micro-batch's draw (a function of seed, step and micro-batch, so a resumed
run draws the same noise). The noise itself is `rnacli.methods.rna.Noise`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rnacli.data.batches import TrainingData, stable_seed
from rnacli.methods.rna import Noise, activation_scale, median_scale
from rnacli.recipe import Recipe
from rnacli.training.passes import Passes

SCALE_BATCHES = 4  # retain batches that RNA's relative scale is measured on


@dataclass
class RNASetup:
    """Where RNA's noise goes and how large it is, fixed before the first step."""

    layers: list[int]
    side: str
    variance: dict[int, float]  # per layer: nu, or nu x the layer's activation scale
    activation_scale: dict[int, float] | None = None  # measured, for scale = "relative"

    def describe(self) -> str:
        per_layer = ", ".join(
            f"layer {i}: variance {v:.4g} (std {v**0.5:.4g})"
            + (f" (scale {self.activation_scale[i]:.4g})" if self.activation_scale else "")
            for i, v in self.variance.items()
        )
        return f"RNA on the {self.side} side, {per_layer}"

    def to_dict(self) -> dict:
        return {
            "layers": self.layers,
            "side": self.side,
            "noise_variance": {str(i): v for i, v in self.variance.items()},
            **(
                {"activation_scale": {str(i): v for i, v in self.activation_scale.items()}}
                if self.activation_scale
                else {}
            ),
        }


def rna_setup(recipe: Recipe, layers: list[int], passes: Passes, data: TrainingData):
    """The noise variance per layer: nu's variance itself (nu, or nu^2 where `rna.nu_is =
    "std"`), or (scale = "relative") that times the layer's activation scale, the median over
    tokens of the per-token mean of z^2 of the reference model on the run's first retain
    batches (the same batches in every process and on resume, the reference's weights: so the
    same number). With nu as a std and the relative scale, the std is nu x the layer's RMS."""
    cfg = recipe.rna
    if not cfg.enabled:
        return None
    nu_variance = cfg.noise_scale**2 if cfg.nu_is == "std" else cfg.noise_scale
    if cfg.scale == "absolute":
        return RNASetup(layers, cfg.side, dict.fromkeys(layers, nu_variance))
    device = next(passes.model.parameters()).device
    seqs = [seq.to(device) for seq in data.first_retain_batches(SCALE_BATCHES)]
    scales = {}
    with torch.no_grad():
        for layer in layers:
            scales[layer] = median_scale(
                [
                    activation_scale(passes.hidden(seq, layer, reference=True), seq.attention_mask)
                    for seq in seqs
                ]
            )
    variance = {i: nu_variance * scales[i] for i in layers}
    return RNASetup(layers, cfg.side, variance, scales)


def step_noise(
    recipe: Recipe, setup: RNASetup | None, step: int, micro: int, device: torch.device
) -> Noise | None:
    """RNA noise for one micro-batch, from a generator seeded by (seed, step, micro), `micro`
    counted over all processes (`TrainingData.micro_index`)."""
    if setup is None:
        return None
    gen = torch.Generator(device=device)
    # a stable hash: Python's hash() of a str is salted per process, which would break resume
    # (the trailing 0 once was the process rank: kept, so that earlier runs keep their noise)
    gen.manual_seed(stable_seed(recipe.train.seed, "rna", step, micro, 0) & 0x7FFF_FFFF_FFFF)
    return Noise(setup.layers, setup.variance, gen, setup.side)
