"""Noise sensitivity of decoder layers (paper Appendix C, eq. 33):

    S_g = E_xi E_z ||g(z + xi) - g(z)||^2 / ||g(z)||^2,   xi ~ N(0, nu I)

where z is the input of layer g (the output of the layer below) for a forget sample and the
ratio is taken per sample over its real tokens. A lower value means the layer is more stable
to noise; the paper finds unlearned models less sensitive than the base, most in middle layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from rich.markup import escape
from rich.table import Table
from torch import nn
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from rnacli.console import progress_bar
from rnacli.data.batches import document_batch
from rnacli.methods.rna import resolve_layers
from rnacli.models.forward import (
    PLAIN_DECODERS,
    StopForward,
    decoder_layers,
    decoder_of,
    skip_below,
    split_layer_output,
    stop_after,
)
from rnacli.models.loading import load_model, model_label

# model label -> layer g -> {"mean", "stderr", "n"}
Results = dict[str, dict[int, dict[str, float]]]


def sensitivity_ratio(
    clean: torch.Tensor, noised: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """||noised - clean||^2 / ||clean||^2 per sample [B], over the real tokens (mask [B, T])."""
    weights = mask.to(clean.dtype).unsqueeze(-1)
    diff = (((noised.float() - clean.float()) * weights) ** 2).sum(dim=(1, 2))
    norm = ((clean.float() * weights) ** 2).sum(dim=(1, 2))
    return diff / norm.clamp_min(1e-12)


def _inputs_and_outputs(
    decoder: nn.Module, layers: nn.ModuleList, ids, mask
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every layer's input and output hidden states from one clean forward pass."""
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []
    handles = []
    for layer in layers:
        handles.append(
            layer.register_forward_pre_hook(
                lambda _m, args, kwargs: inputs.append(
                    args[0] if args else kwargs["hidden_states"]
                ),
                with_kwargs=True,
            )
        )
        handles.append(
            layer.register_forward_hook(lambda _m, _a, out: outputs.append(split_layer_output(out)))
        )
    try:
        decoder(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return inputs, outputs


def _noised_output(
    model: PreTrainedModel,
    decoder: nn.Module,
    layers: nn.ModuleList,
    index: int,
    ids,
    mask,
    z: torch.Tensor,
    xi: torch.Tensor,
) -> torch.Tensor:
    """g(z + xi) for g = layers[index]: the layers below are skipped (z is their output) on
    plain decoders; elsewhere they run again and the noise is added at g's input."""
    plain = model.config.model_type in PLAIN_DECODERS

    def add_noise(_m, args, kwargs):
        if args:
            return (args[0] + xi, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + xi}

    handle = layers[index].register_forward_pre_hook(add_noise, with_kwargs=True)
    try:
        with stop_after(layers[index]), skip_below(layers, index if plain else 0):
            if plain and index > 0:
                decoder(inputs_embeds=z, attention_mask=mask, use_cache=False)
            else:
                decoder(input_ids=ids, attention_mask=mask, use_cache=False)
    except StopForward as stop:
        return stop.hidden
    finally:
        handle.remove()
    raise RuntimeError("the forward pass did not reach the layer")  # pragma: no cover


@torch.no_grad()
def layer_sensitivity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    docs: Sequence[str],
    layers: Sequence[int],
    *,
    noise_scale: float = 1.0,
    draws: int = 1,
    max_length: int = 512,
    batch_size: int = 4,
    seed: int = 0,
    label: str = "sensitivity",
) -> dict[int, dict[str, float]]:
    """Mean (and stderr over samples x draws) of S_g for each layer index g."""
    _, decoder = decoder_of(model)
    all_layers = decoder_layers(decoder)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    ratios: dict[int, list[float]] = {i: [] for i in layers}
    with progress_bar(label, total=len(docs)) as bar:
        for start in range(0, len(docs), batch_size):
            seq = document_batch(tokenizer, docs[start : start + batch_size], max_length).to(device)
            ids, mask = seq.input_ids, seq.attention_mask
            inputs, outputs = _inputs_and_outputs(decoder, all_layers, ids, mask)
            for i in layers:
                for _ in range(draws):
                    xi = torch.randn(
                        inputs[i].shape, generator=gen, device=device, dtype=torch.float32
                    ) * math.sqrt(noise_scale)
                    noised = _noised_output(
                        model, decoder, all_layers, i, ids, mask, inputs[i], xi.to(inputs[i].dtype)
                    )
                    ratios[i] += sensitivity_ratio(outputs[i], noised, mask).tolist()
            bar.advance(bar.task_ids[0], ids.shape[0])
    out = {}
    for i, values in ratios.items():
        t = torch.tensor(values, dtype=torch.float64)
        se = (t.std() / math.sqrt(len(values))).item() if len(values) > 1 else float("nan")
        out[i] = {"mean": t.mean().item(), "stderr": se, "n": len(values)}
    return out


def sensitivity_of_models(
    specs: Sequence[str],
    docs: Sequence[str],
    layers: int | list[int] | str,
    *,
    device: str = "auto",
    key: str = "layers",
    **options: Any,
) -> Results:
    """`layer_sensitivity` of each model, loaded one at a time (labels as `model_label`).

    `layers` as `resolve_layers` reads it (7, [5, 6, 7], early, middle, late, all), resolved
    for each model's depth with layer min(7, depth - 1) as the unlearn layer; `key` names it
    in the error for a bad value. `options` (noise_scale, draws, max_length, batch_size,
    seed) go to `layer_sensitivity`. Raises RnacliError for a model that does not load."""
    results: Results = {}
    for spec in specs:
        model, tokenizer = load_model(spec, device=device)
        n_layers = model.config.num_hidden_layers
        chosen = resolve_layers(layers, n_layers, min(7, n_layers - 1), key=key)
        label = model_label(spec)
        results[label] = layer_sensitivity(model, tokenizer, docs, chosen, label=label, **options)
        del model  # before the next model loads
    return results


def sensitivity_table(results: Results, source: str, documents: int) -> Table:
    """Rows: layers g; columns: the mean S_g of each model ("-" for a layer it lacks)."""
    table = Table(
        title=f"Noise sensitivity over {documents} documents of {escape(source)}",
        title_justify="left",
    )
    table.add_column("layer g", justify="right")
    for label in results:
        table.add_column(escape(label), justify="right")
    for layer in sorted({i for r in results.values() for i in r}):
        table.add_row(
            str(layer),
            *[f"{r[layer]['mean']:.4g}" if layer in r else "-" for r in results.values()],
        )
    return table


def sensitivity_plot(results: Results, path, title: str) -> None:
    """One curve per model: mean sensitivity per layer (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, per_layer in results.items():
        xs = sorted(per_layer)
        ys = [per_layer[i]["mean"] for i in xs]
        es = [0 if math.isnan(per_layer[i]["stderr"]) else per_layer[i]["stderr"] for i in xs]
        ax.errorbar(xs, ys, yerr=es, marker="o", markersize=3, capsize=2, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("layer g")
    ax.set_ylabel("noise sensitivity  E||g(z+ξ)−g(z)||² / ||g(z)||²")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130, format="png")
    plt.close(fig)
