"""Random Noise Augmentation (the paper's contribution).

Over every retain batch, add delta ~ N(0, nu I) (std sqrt(nu)), drawn independently per element
and per step, to the output of the chosen decoder layer(s), on one of two sides:

- `reference` (Algorithm 1 as written): in the frozen reference's retain pass; the noised
  reference output becomes the retain target (latent for RM methods, logits for PO methods);
- `model` (Assumption 5.1 / Theorem 5.2: the RNA model's own retain representation is
  randomised, z_rna = z_u + delta): in the updated model's retain pass, the target clean
  (noise augmentation, as in adversarial training).

Forget passes are never noised. The noise rides inside a pass that is computed anyway, so RNA
costs no extra forward pass. With `scale = "relative"`, nu is a fraction of each chosen
layer's typical activation scale (`activation_scale`), measured on the first retain batches,
so that one nu carries over between models (the paper's absolute 0.01-0.1 fits Zephyr-7B's
layer 7, whose activations are far smaller than SmolLM2-135M's).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from rnacli.errors import RnacliError
from rnacli.models.forward import replace_layer_output, split_layer_output

PRESETS = ("early", "middle", "late", "all")


def resolve_layers(
    spec: int | list[int] | str | None, num_layers: int, unlearn_layer: int, key: str = "rna.layers"
) -> list[int]:
    """Layer indices from a recipe value: one index, a list, early/middle/late, or all.

    early = the unlearn layer and the two below it (5,6,7 in the paper); middle and late are
    the same width at the middle and near the top (14,15,16 and 28,29,30 for 32 layers)."""
    if spec is None:
        layers = [unlearn_layer]
    elif isinstance(spec, str):
        mid = num_layers // 2
        presets = {
            "early": [unlearn_layer - 2, unlearn_layer - 1, unlearn_layer],
            "middle": [mid - 2, mid - 1, mid],
            "late": [num_layers - 4, num_layers - 3, num_layers - 2],
            "all": list(range(num_layers)),
        }
        if spec not in presets:
            raise RnacliError(
                f"{key} = '{spec}': expected a layer index, a list, or one of {', '.join(PRESETS)}"
            )
        layers = presets[spec]
    elif isinstance(spec, int):
        layers = [spec]
    else:
        layers = list(spec)
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad or not layers:
        raise RnacliError(
            f"{key} = {spec!r}: layers must lie in 0..{num_layers - 1} "
            f"(the model has {num_layers} layers)"
        )
    return sorted(set(layers))


SIDES = ("reference", "model")


class Noise:
    """Gaussian noise for the output of `layers`: variance `scale` (nu), one value for every
    layer or one per layer ({layer: variance}, the relative scale), on `side` ("reference" or
    "model"), from a generator that the training loop seeds per step (so a resumed run draws
    the same noise)."""

    def __init__(
        self,
        layers: Sequence[int],
        scale: float | Mapping[int, float],
        generator: torch.Generator,
        side: str = "reference",
    ) -> None:
        variances = scale if isinstance(scale, Mapping) else dict.fromkeys(layers, scale)
        if any(not v >= 0 for v in variances.values()):  # also catches nan
            raise RnacliError(f"rna.noise_scale must be >= 0, got {scale}")
        if side not in SIDES:
            raise RnacliError(f"rna.side = {side!r}: expected one of {', '.join(SIDES)}")
        self.layers = list(layers)
        self.std = {i: math.sqrt(variances[i]) for i in self.layers}
        self.generator = generator
        self.side = side
        self.calls = 0  # how many layer outputs were noised (tests read it)

    def sample_like(self, hidden: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        noise = torch.randn(
            hidden.shape,
            generator=self.generator,
            dtype=torch.float32,
            device=self.generator.device,
        )
        std = self.std[self.layers[0] if layer is None else layer]
        return (noise * std).to(device=hidden.device, dtype=hidden.dtype)

    def on(self, reference: bool) -> Noise | None:
        """This noise if it belongs in a pass of the reference (True) or the updated model."""
        return self if (self.side == "reference") == reference else None

    @contextmanager
    def inject(self, decoder_layers: Sequence[nn.Module]) -> Iterator[Noise]:
        """Add noise to the output of each chosen layer while the context is open."""

        def hook_for(layer: int):
            def hook(_module: nn.Module, _args: object, output: object) -> object:
                hidden = split_layer_output(output)
                self.calls += 1
                return replace_layer_output(output, hidden + self.sample_like(hidden, layer))

            return hook

        with ExitStack() as stack:
            for i in self.layers:
                handle = decoder_layers[i].register_forward_hook(hook_for(i))
                stack.callback(handle.remove)
            yield self


def noise_for(noise: Noise | None, reference: bool) -> Noise | None:
    """The noise a retain pass gets: of the reference (reference=True) or the updated model."""
    return noise.on(reference) if noise is not None else None


def activation_scale(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token mean of z^2 over the hidden dimension, for the real tokens: hidden [B, T, d],
    mask [B, T] -> [n_real_tokens]. Its median is a layer's typical activation scale: robust to
    the few massive-activation dimensions that dominate the whole tensor's variance (SmolLM2's
    layer 5: variance 113, median per-token mean z^2 18, max |z| 837)."""
    per_token = hidden.float().pow(2).mean(-1)
    return per_token[mask.bool()]


def median_scale(per_token: Sequence[torch.Tensor]) -> float:
    """The median over every token of several batches (see `activation_scale`)."""
    return float(torch.cat([t.flatten() for t in per_token]).median())


def expectation_note(family: str, layers: Sequence[int], unlearn_layer: int, label: str) -> str:
    """One line when RNA cannot change an RM method's expected retain gradient, else "".

    mse(z + delta, z_ref) and mse(z, z_ref + delta) are quadratic in a zero-mean delta with a
    linear cross term: with the noise at the unlearn layer l (either side) the expected
    gradient is the plain one and RNA adds only gradient noise. Noise below l passes through
    trained or reference layers first and does change it (tests/test_rna.py)."""
    if family != "rm" or set(layers) != {unlearn_layer}:
        return ""
    return (
        f"note: rna.layers = {unlearn_layer} is {label}'s unlearn layer: noise there leaves the "
        "expected retain gradient unchanged on either side (it only adds gradient noise); "
        "allowed, as in the paper's recipes"
    )
