"""Random Noise Augmentation (the paper's contribution, Algorithm 1).

In every reference pass over a retain batch, add delta ~ N(0, nu I) (std sqrt(nu)), drawn
independently per element and per step, to the output of the chosen decoder layer(s). The noised
reference output becomes the retain target (latent for RM methods, logits for PO methods).
Forget passes and the updated model's passes are never noised. The noise rides inside a pass
that is computed anyway, so RNA costs no extra forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from rnacli.errors import RnacliError
from rnacli.forward import replace_layer_output, split_layer_output

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


class Noise:
    """Gaussian noise of variance `scale` (nu) for the output of `layers`, from a generator that
    the training loop seeds per step (so a resumed run draws the same noise)."""

    def __init__(self, layers: Sequence[int], scale: float, generator: torch.Generator) -> None:
        if scale < 0:
            raise RnacliError(f"rna.noise_scale must be >= 0, got {scale}")
        self.layers = list(layers)
        self.std = math.sqrt(scale)
        self.generator = generator
        self.calls = 0  # how many layer outputs were noised (tests read it)

    def sample_like(self, hidden: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(
            hidden.shape,
            generator=self.generator,
            dtype=torch.float32,
            device=self.generator.device,
        )
        return (noise * self.std).to(device=hidden.device, dtype=hidden.dtype)

    @contextmanager
    def inject(self, decoder_layers: Sequence[nn.Module]) -> Iterator[Noise]:
        """Add noise to the output of each chosen layer while the context is open."""

        def hook(_module: nn.Module, _args: object, output: object) -> object:
            hidden = split_layer_output(output)
            self.calls += 1
            return replace_layer_output(output, hidden + self.sample_like(hidden))

        with ExitStack() as stack:
            for i in self.layers:
                handle = decoder_layers[i].register_forward_hook(hook)
                stack.callback(handle.remove)
            yield self
