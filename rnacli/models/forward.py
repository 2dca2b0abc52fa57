"""Partial forward passes through a decoder-only transformer, with no model surgery that
outlives a call:

- `stop_after(layer)`: end the pass as soon as a layer has produced its output (RM methods
  only need layer l: the layers above and the LM head never run);
- `skip_below(layers, start)`: replace the layers under `start` by pass-throughs, so that a
  hidden state computed once (the shared prefix) can be fed as `inputs_embeds`.

Decoder layers return the hidden-state tensor in transformers 5 and a tuple whose element 0 it
is in 4.x; `split_layer_output`/`replace_layer_output` handle both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import PreTrainedModel

from rnacli.errors import RnacliError

# Architectures whose decoder feeds `inputs_embeds` to layer 0 unchanged and whose LM head is a
# plain linear map: for them the shared prefix and the chunked LM head are exact.
PLAIN_DECODERS = {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2"}


def split_layer_output(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[index,return-value]


def replace_layer_output(output: object, hidden: torch.Tensor) -> object:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def decoder_of(model: PreTrainedModel) -> tuple[str, nn.Module]:
    """(attribute name, module) of the decoder stack inside a causal LM (`model` for Llama)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    for name, child in model.named_children():
        if child is decoder:
            return name, decoder
    raise RnacliError(f"{type(model).__name__}: cannot find its decoder stack")


def decoder_layers(decoder: nn.Module) -> nn.ModuleList:
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise RnacliError(f"{type(decoder).__name__}: no `layers` list of decoder layers")
    return layers


class StopForward(Exception):
    """Raised by a hook to end a forward pass early; carries the layer's output."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


@contextmanager
def stop_after(layer: nn.Module) -> Iterator[None]:
    """Raise StopForward with the layer's output once it is computed (hooks registered earlier,
    such as RNA's noise, have already run on it)."""

    def hook(_module: nn.Module, _args: object, output: object) -> None:
        raise StopForward(split_layer_output(output))

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class _PassThrough(nn.Module):
    def __init__(self, tuple_output: bool) -> None:
        super().__init__()
        self.tuple_output = tuple_output

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> object:
        return (hidden_states,) if self.tuple_output else hidden_states


def _layers_return_tuples() -> bool:
    import transformers

    return int(transformers.__version__.split(".")[0]) < 5


@contextmanager
def skip_below(layers: nn.ModuleList, start: int) -> Iterator[None]:
    """Temporarily make layers[:start] pass their input through unchanged."""
    saved = [layers[i] for i in range(start)]
    try:
        for i in range(start):
            layers[i] = _PassThrough(_layers_return_tuples())
        yield
    finally:
        for i, layer in enumerate(saved):
            layers[i] = layer
