"""What a run is built from, each a small function that `UnlearningRecipe.setup()` calls: the
model with its trainable tensors, the batches, the optimizer."""

from __future__ import annotations

import logging
import re

import torch
from torch import nn

from rnacli.data import load_corpus
from rnacli.data.batches import TrainingData, sample_indices
from rnacli.data.records import Document, document_text
from rnacli.errors import RnacliError
from rnacli.methods.registry import method_spec
from rnacli.models.loading import load_model, require_bitsandbytes, resolve_dtype
from rnacli.recipe import DataConfig, Recipe

log = logging.getLogger(__name__)


def default_trainable(layer: int) -> str:
    """mlp.down_proj of layers l-2..l, as the WMDP reference code (paper: layers 5, 6, 7)."""
    layers = "|".join(str(i) for i in range(max(0, layer - 2), layer + 1))
    return rf"\.layers\.({layers})\.mlp\.down_proj\.weight$"


def select_trainable(
    model: nn.Module, pattern: str, key: str = "train.trainable"
) -> dict[str, nn.Parameter]:
    """Freeze everything, then unfreeze the tensors whose name matches `pattern` (errors name
    `key`, e.g. 'recipe.toml: train.trainable')."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise RnacliError(f"{key}: invalid regex {pattern!r} ({e})") from None
    chosen = {}
    for name, param in model.named_parameters():
        param.requires_grad_(bool(regex.search(name)))
        if param.requires_grad:
            chosen[name] = param
    if not chosen:
        sample = ", ".join(n for n, _ in list(model.named_parameters())[:3])
        raise RnacliError(
            f"{key}: {pattern!r} matches no parameter (names look like: {sample}, ...)"
        )
    return chosen


def _cut(doc: Document, max_chars: int | None) -> Document:
    """The document's first max_chars characters (of the completion, for a pair)."""
    if max_chars is None:
        return doc
    if isinstance(doc, str):
        return doc[:max_chars]
    prompt, completion = doc
    return prompt, completion[: max(1, max_chars - len(prompt))]


def _documents(
    source: str, key: str, d: DataConfig, max_samples: int | None, seed: int
) -> list[Document]:
    min_chars = d.min_chars
    docs = [_cut(doc, d.max_chars) for doc in load_corpus(source)]
    docs = [doc for doc in docs if len(document_text(doc)) >= min_chars]
    if not docs:
        raise RnacliError(
            f"{key} '{source}': no documents of at least {min_chars} characters (data.min_chars)"
        )
    return [docs[i] for i in sample_indices(len(docs), max_samples, seed)]


def training_data(recipe: Recipe, tokenizer, rank: int = 0, world_size: int = 1) -> TrainingData:
    d, seed = recipe.data, recipe.train.seed
    forget = [
        _documents(src, f"data.forget[{k}]", d, d.max_samples, seed)
        for k, src in enumerate(d.forget)
    ]
    retain = _documents(d.retain, "data.retain", d, None, seed)
    refusals = load_corpus(d.refusal) if method_spec(recipe.method.name).refusals else None
    return TrainingData(
        tokenizer=tokenizer,
        forget=forget,
        forget_names=list(d.forget),
        forget_max_length=list(d.forget_max_length),
        retain=retain,
        retain_max_length=[d.retain_length(k) for k in range(len(d.forget))],
        batch_size=d.batch_size,
        seed=seed,
        refusals=refusals,
        prompt_tokens=recipe.method.prompt_tokens,
        grad_accum=recipe.train.grad_accum,
        refusal_per_row=recipe.train.accumulation == "exact",
        all_positions=recipe.method.mean_over == "all-positions",
        rank=rank,
        world_size=world_size,
    )


def make_optimizer(
    recipe: Recipe, params: list[nn.Parameter], device: torch.device
) -> torch.optim.Optimizer:
    """AdamW over `params` at the recipe's lr and weight decay: torch's, or bitsandbytes'
    8-bit AdamW (`train.optimizer = "adamw8bit"`: 1-byte states with block-wise absmax, on
    CUDA or the CPU; tensors under 4,096 values keep 32-bit states). Raises RnacliError when
    bitsandbytes is missing. `device` is where the states live (bitsandbytes follows the
    parameters)."""
    cfg = recipe.train
    if cfg.optimizer == "adamw8bit":
        require_bitsandbytes("train.optimizer = 'adamw8bit'")
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def checkpoint_mode(model: nn.Module) -> None:
    """Training mode only for the modules that decide whether to checkpoint (transformers
    recomputes a layer in backward only in training mode); every other module, dropout and
    attention dropout included, stays in eval mode. Gradient checkpointing then changes memory,
    never the numbers: the policy and the reference passes stay deterministic."""
    model.eval()
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False):
            module.training = True


def load_for_training(recipe: Recipe, device: torch.device, on: torch.device | None = None):
    """(model, tokenizer, trainable tensors) with everything but the trainable tensors frozen,
    in the dtype for `device`, loaded onto `on` (default: `device`; FSDP loads on the CPU)."""
    if recipe.model.load_in is not None:
        raise RnacliError(
            f"model.load_in = '{recipe.model.load_in}' is for evaluation: training "
            "updates full-precision tensors (use train.optimizer = 'adamw8bit' "
            "to save memory)"
        )
    model, tokenizer = load_model(
        recipe.model.name,
        dtype=str(resolve_dtype(recipe.model.dtype, device)).removeprefix("torch."),
        device=str(on or device),
        trust_remote_code=recipe.model.trust_remote_code,
    )
    model.config.use_cache = False
    n_layers = model.config.num_hidden_layers
    if recipe.method.layer >= n_layers:
        raise RnacliError(
            f"{recipe.source}: method.layer = {recipe.method.layer}, but the model has "
            f"{n_layers} layers (0..{n_layers - 1})"
        )
    pattern = recipe.train.trainable or default_trainable(recipe.method.layer)
    trainable = select_trainable(model, pattern, f"{recipe.source}: train.trainable")
    n_params, total = sum(p.numel() for p in trainable.values()), model.num_parameters()
    log.info(
        "trainable: %d tensors, %s parameters (%.2f%% of %s)",
        len(trainable),
        f"{n_params:,}",
        100 * n_params / total,
        f"{total:,}",
    )
    if recipe.train.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        checkpoint_mode(model)
    return model, tokenizer, trainable
