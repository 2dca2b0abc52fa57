"""`rnacli plan`: the peak memory of one training step, estimated before any weight is downloaded.

Only the model's config is read (a local folder's config.json, the embedded model's cached
folder, a GGUF file's header, the Hub's config.json, or a built-in table of known models); the
model is then built on torch's `meta` device, which gives every parameter's name and shape for
free. The estimate is a sum of parts, each shown in the table:

  weights                   every parameter x its dtype (bf16 on CUDA, fp32 on the CPU)
  reference                 delta reference: the original values of the trainable tensors only
  gradients                 of the trainable tensors, in their dtype
  optimizer states          AdamW: exp_avg + exp_avg_sq in the parameter dtype (torch keeps them
                            there); bitsandbytes AdamW8bit: 1 byte each + block statistics
  activations               what autograd keeps for backward, per token and decoder layer
  working set               the largest transient: one layer's forward, or one LM-head chunk

The activation model is an inventory of the tensors that autograd saves in a Llama/Mistral
decoder layer when only a few tensors train (frozen linear layers keep no input), checked against
torch's MemTracker on tiny models (tests/test_plan.py). Batches are taken as padded to the
recipe's max lengths, the worst case: with padding, SDPA repeats grouped K/V heads and keeps a
T x T mask per layer.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rnacli.errors import RnacliError
from rnacli.methods.registry import method_spec
from rnacli.models.forward import PLAIN_DECODERS
from rnacli.recipe import Recipe, load_recipe
from rnacli.training.step import head_chunk_tokens

GIB = 1 << 30
MIB = 1 << 20
STRATEGIES = ("ddp", "fsdp")
# DPO's preferred answer is a refusal sentence after the prompt; rnacli's own are < 30 tokens.
REFUSAL_TOKENS = 64
# CUDA memory outside torch's tensors: the context (~0.5 GiB with lazy module loading) and the
# caching allocator's slack. A rule of thumb, not a measurement.
CUDA_CONTEXT = int(0.6 * GIB)
CUDA_SLACK = 0.08
_LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")

# Configs of models the recipes name, for planning offline (the Hub is often unreachable where
# plans are made). Values are those of each model's config.json on the Hub.
_MISTRAL_7B = {
    "model_type": "mistral",
    "architectures": ["MistralForCausalLM"],
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
}
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "HuggingFaceH4/zephyr-7b-beta": _MISTRAL_7B,
    "mistralai/Mistral-7B-v0.1": _MISTRAL_7B,
    "meta-llama/Llama-2-7b-hf": {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": False,
    },
    "meta-llama/Meta-Llama-3-8B": {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": False,
    },
}


# -- the model's shape, from its config alone ------------------------------------------------


@dataclass(frozen=True)
class Arch:
    """What the estimate needs to know about a model: sizes and every parameter's shape."""

    architecture: str
    model_type: str
    layer_class: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    head_dim: int
    vocab: int
    shapes: dict[str, tuple[int, ...]] = field(repr=False)  # tied weights appear once
    source: str = ""

    @property
    def params(self) -> int:
        return sum(_numel(s) for s in self.shapes.values())


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def world_base() -> str:
    """The model `rnacli world build` fine-tunes."""
    from rnacli.world.learn import LearnConfig

    return LearnConfig().base


def model_config(spec: str, trust_remote_code: bool = False):
    """(transformers config, where it came from) for a recipe's model.name; reads no weights."""
    from transformers import AutoConfig

    from rnacli.models.loading import EMBEDDED_MODELS, embedded_model_dir, is_run_dir
    from rnacli.runs.checkpoint import read_meta

    path = Path(spec).expanduser()
    try:
        if spec in EMBEDDED_MODELS:
            folder = embedded_model_dir(spec)
            return AutoConfig.from_pretrained(folder), str(folder / "config.json")
        if spec == "world" or spec.startswith("world["):
            # the learned world is its base model fine-tuned: the same architecture, known
            # before `rnacli world build` has run
            base = world_base()
            config, source = model_config(base, trust_remote_code)
            return config, f"{source} (the world's base, {base})"
        if path.is_dir() and is_run_dir(path):
            meta = read_meta(path)
            return model_config(meta["base_model"], trust_remote_code)
        if path.is_file() and path.suffix == ".gguf":
            config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
            return config, str(path)
        if path.is_dir():
            if not (path / "config.json").exists():
                ggufs = sorted(path.glob("*.gguf"))
                if ggufs:
                    return model_config(str(ggufs[0]), trust_remote_code)
                raise RnacliError(f"model.name '{spec}': folder without a config.json")
            config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
            return config, str(path / "config.json")
        if spec in KNOWN_CONFIGS:
            known = dict(KNOWN_CONFIGS[spec])
            return AutoConfig.for_model(known.pop("model_type"), **known), "built-in table"
        config = AutoConfig.from_pretrained(spec, trust_remote_code=trust_remote_code)
        return config, f"{spec} (config.json from the Hub)"
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        known = ", ".join(KNOWN_CONFIGS)
        raise RnacliError(
            f"model.name '{spec}': no config to plan with ({first}); offline, give a local "
            f"folder with config.json or one of: {known}"
        ) from None


def architecture(config, source: str = "", trust_remote_code: bool = False) -> Arch:
    """Build the model on the meta device (no memory, no weights) to read its parameters."""
    from transformers import AutoModelForCausalLM
    from transformers import logging as hf_logging

    from rnacli.models.forward import decoder_layers, decoder_of

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError) as e:
        raise RnacliError(f"{source or 'model'}: cannot build the model to plan ({e})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    layers = decoder_layers(decoder_of(model)[1])
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = text.hidden_size
    heads = text.num_attention_heads
    return Arch(
        architecture=type(model).__name__,
        model_type=text.model_type,
        layer_class=type(layers[0]).__name__,
        hidden=hidden,
        intermediate=getattr(text, "intermediate_size", None) or 4 * hidden,
        layers=len(layers),
        heads=heads,
        head_dim=getattr(text, "head_dim", None) or hidden // heads,
        vocab=text.vocab_size,
        shapes={n: tuple(p.shape) for n, p in model.named_parameters()},
        source=source,
    )


def trainable_names(arch: Arch, recipe: Recipe) -> list[str]:
    """The parameters `rnacli train` would unfreeze (same regex, same error)."""
    from rnacli.training.setup import default_trainable

    if recipe.method.layer >= arch.layers:
        raise RnacliError(
            f"method.layer = {recipe.method.layer}, but the model has {arch.layers} "
            f"layers (0..{arch.layers - 1})"
        )
    pattern = recipe.train.trainable or default_trainable(recipe.method.layer)
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise RnacliError(f"train.trainable: invalid regex {pattern!r} ({e})") from None
    names = [n for n in arch.shapes if regex.search(n)]
    if not names:
        sample = ", ".join(list(arch.shapes)[:3])
        raise RnacliError(
            f"train.trainable: {pattern!r} matches no parameter (names look like: {sample}, ...)"
        )
    return names


# -- the estimate ----------------------------------------------------------------------------


@dataclass
class Part:
    """One row of the plan: a kind of memory, its bytes per device, and how it is counted."""

    name: str
    bytes: int
    detail: str


@dataclass(frozen=True)
class Setting:
    """Where and how the step runs: the sizes of the element types involved."""

    weight: int  # bytes per weight element
    compute: int  # bytes per linear-layer output (2 under bf16 autocast)
    dtype: str
    autocast: bool = False

    @property
    def stream(self) -> int:  # the residual stream stays in the weights' dtype
        return self.weight


def _setting(recipe: Recipe, device: str) -> Setting:
    from rnacli.models.loading import resolve_dtype
    from rnacli.runtime.precision import use_autocast

    dtype = resolve_dtype(recipe.model.dtype, torch.device(device))
    weight = torch.empty((), dtype=dtype).element_size()
    # Planning for a GPU needs no GPU: "auto" there is bf16 (the weights are bf16 anyway).
    if device == "cuda":
        autocast = recipe.train.autocast is not False
    else:
        autocast = use_autocast(recipe.train.autocast, torch.device(device))
    compute = 2 if autocast else weight
    return Setting(weight, compute, str(dtype).removeprefix("torch."), autocast)


@dataclass(frozen=True)
class Pass:
    """One forward pass of a step over B sequences of (at most) T tokens."""

    name: str
    batch: int
    length: int
    grad: bool

    @property
    def tokens(self) -> int:
        return self.batch * self.length


def step_passes(recipe: Recipe, forget_length: int) -> list[Pass]:
    """The forward passes of one step on a forget corpus of `forget_length` tokens."""
    b, m = recipe.data.batch_size, recipe.method
    spec = method_spec(m.name)
    passes = [Pass("forget", b, forget_length, True)]
    if spec.refusals:  # x = the first prompt tokens of the document, y = a refusal sentence
        win = min(m.prompt_tokens, forget_length // 2) + REFUSAL_TOKENS
        passes.append(Pass("refusal", b, win, True))
        passes.append(Pass("refusal, reference", b, win, False))
    if spec.reference_forget_pass:
        passes.append(Pass("forget, reference", b, forget_length, False))
    retain = max(recipe.data.retain_length(k) for k in range(len(recipe.data.forget)))
    passes.append(Pass("retain", b, retain, True))
    passes.append(Pass("retain, reference", b, retain, False))
    return passes


@dataclass
class _Layout:
    """Which decoder layers keep activations for backward."""

    first: int  # first layer holding a trainable tensor (below it: no-grad shared prefix)
    top: int  # last layer a pass with gradients runs through
    partial_width: int  # values per token the first trainable layer keeps (its trainable inputs)
    shared_prefix: bool

    @property
    def live(self) -> int:  # layers whose input needs a gradient: they keep everything
        return max(0, self.top - self.first)


def _layout(arch: Arch, recipe: Recipe, trainable: list[str]) -> _Layout:
    rm = recipe.method.family == "rm"
    top = recipe.method.layer if (rm and recipe.train.truncated_forward) else arch.layers - 1
    indices = [_LAYER_INDEX.search(n) for n in trainable]
    if not all(indices):  # embeddings or the head train: every layer is on the gradient path
        return _Layout(-1, top, 0, False)
    first = min(int(i.group(1)) for i in indices)
    # A weight [out, in] keeps its input (in values per token) for its own gradient.
    width = _trainable_width(arch, trainable, first)
    plain = arch.model_type in PLAIN_DECODERS
    return _Layout(first, top, width, recipe.train.shared_prefix and plain and first > 0)


def _layer_bytes(arch: Arch, s: Setting, length: int) -> int:
    """Bytes per token that one decoder layer keeps for backward when its input needs a gradient
    and only a few tensors train (a frozen linear layer keeps no input):

    - both RMSNorms keep their input in fp32 (they upcast) and 1/rms;
    - SDPA keeps q, k, v, its output, the fp32 log-sum-exp per head and, with padding, the
      T x T mask (per layer) and k, v repeated to all heads (grouped-query attention);
    - the MLP keeps gate, act(gate) and up (a trainable weight's input is added by the caller).
    """
    h, q = arch.hidden, arch.heads * arch.head_dim
    norms = 2 * (4 * h + 4)
    attention = s.compute * (q + 2 * q + q) + 4 * arch.heads + s.compute * length
    mlp = s.compute * 3 * arch.intermediate
    return norms + attention + mlp


def _trainable_width(arch: Arch, trainable: list[str], layer: int) -> int:
    return sum(
        arch.shapes[n][-1]
        for n in trainable
        if (m := _LAYER_INDEX.search(n)) and int(m.group(1)) == layer
    )


def _linear_params(arch: Arch, layer: int) -> int:
    prefix = f".layers.{layer}."
    return sum(_numel(s) for n, s in arch.shapes.items() if prefix in n and len(s) == 2)


def estimate(
    recipe: Recipe,
    arch: Arch,
    device: str = "cuda",
    gpus: int = 1,
    strategy: str = "ddp",
) -> dict[str, Any]:
    """Peak bytes per device of one training step (the worst forget corpus), part by part."""
    if strategy not in STRATEGIES:
        raise RnacliError(f"strategy '{strategy}': expected one of {', '.join(STRATEGIES)}")
    s = _setting(recipe, device)
    trainable = trainable_names(arch, recipe)
    n_train = sum(_numel(arch.shapes[n]) for n in trainable)
    shard = gpus if (strategy == "fsdp" and gpus > 1) else 1
    parts = _static_parts(recipe, arch, s, trainable, n_train, shard)
    worst = None
    for length in sorted(set(recipe.data.forget_max_length)):
        for phase in _phases(recipe, step_passes(recipe, length)):
            step = _activation_parts(recipe, arch, s, trainable, phase)
            if worst is None or sum(p.bytes for p in step) > sum(p.bytes for p in worst):
                worst = step
    parts += worst
    forward_backward = sum(p.bytes for p in parts)
    # The optimizer step runs once backward has freed the activations; foreach AdamW keeps one
    # temporary per trainable tensor. With master weights the gradients it reads are the fp32
    # masters' (the model's own were moved there). The peak only for tiny batches, but then it is.
    optimized = 4 if _masters(recipe, s) else s.weight
    step = sum(p.bytes for p in parts if p.name not in ("activations", "working set", "gradients"))
    step += 2 * n_train * optimized
    tensors = max(forward_backward, step)
    overhead = 0
    if device == "cuda":
        overhead = CUDA_CONTEXT + int(CUDA_SLACK * tensors)
        rule = f"rule of thumb: {CUDA_CONTEXT / GIB:.1f} GiB + {CUDA_SLACK:.0%} of the tensors"
        parts.append(Part("CUDA context + allocator", overhead, rule))
    return {
        "parts": parts,
        "tensor_bytes": tensors,
        "peak_bytes": tensors + overhead,
        "peak_phase": "forward/backward" if forward_backward >= step else "optimizer step",
        "dtype": s.dtype,
        "trainable_params": n_train,
        "trainable_tensors": len(trainable),
    }


def _masters(recipe: Recipe, s: Setting) -> bool:
    """Whether the run keeps fp32 master copies of its trainable tensors
    (rnacli/training/master.py)."""
    return recipe.train.master_weights and s.weight < 4


def _phases(recipe: Recipe, passes: list[Pass]) -> list[list[Pass]]:
    """Passes whose activations coexist: with train.split_backward the forget loss is
    backpropagated before the retain passes run (rnacli/training/step.py)."""
    if not recipe.train.split_backward:
        return [passes]
    retain = [p for p in passes if p.name.startswith("retain")]
    return [[p for p in passes if p not in retain], retain]


def _static_parts(
    recipe: Recipe, arch: Arch, s: Setting, trainable: list[str], n_train: int, shard: int
) -> list[Part]:
    """Weights, reference, master weights, gradients and optimizer states. Under FSDP
    (`shard` > 1) only the frozen weights are sharded: rnacli keeps the trainable tensors whole
    on every GPU (rnacli/training/sharding.py), so their gradients, masters and states are not
    divided."""
    cfg, total = recipe.train, arch.params
    frozen = total - n_train
    if shard > 1:
        weights = Part(
            "weights",
            frozen * s.weight // shard + n_train * s.weight,
            f"{frozen:,} frozen x {s.weight} B ({s.dtype}) / {shard} GPUs + "
            f"{n_train:,} trainable, whole",
        )
    else:
        weights = Part("weights", total * s.weight, f"{total:,} x {s.weight} B ({s.dtype})")
    parts = [weights]
    if shard > 1:  # FSDP all-gathers one wrapped decoder layer at a time, the next prefetched
        layer = 2 * _linear_params(arch, 0) * s.weight
        parts.append(Part("gathered layers", layer, f"2 x {arch.layer_class} unsharded"))
    if cfg.reference == "delta":
        ref = Part(
            "reference (delta)",
            n_train * s.weight,
            f"original values of the {len(trainable)} trainable tensors",
        )
    else:
        ref = Part("reference (copy)", total * s.weight, "a deep copy of the whole model")
    parts.append(ref)
    masters = _masters(recipe, s)
    if masters:
        parts.append(
            Part("master weights", n_train * 4, f"fp32 copies of the {n_train:,} trainable")
        )
    grads, detail = n_train * s.weight, f"{n_train:,} trainable x {s.weight} B"
    if masters and cfg.grad_accum > 1:  # the fp32 masters' sum over micro-batches
        grads += n_train * 4
        detail += " + the fp32 masters' (summed over micro-batches)"
    parts.append(Part("gradients", grads, detail))
    state = 4 if masters else s.weight
    state_dtype = "fp32, on the masters" if masters else s.dtype
    if cfg.optimizer == "adamw8bit":
        # 8-bit states for tensors of >= 4096 values, plus one fp32 absmax per 256-value block.
        per = 2 + 2 * 4 / 256
        opt = Part("optimizer (AdamW8bit)", int(n_train * per), "2 x 1 B + block stats")
    else:
        # torch creates exp_avg/exp_avg_sq with zeros_like(param): in the stepped tensor's dtype.
        opt = Part(
            "optimizer (AdamW)",
            n_train * 2 * state,
            f"exp_avg + exp_avg_sq, 2 x {state} B ({state_dtype})",
        )
    parts.append(opt)
    return parts


def _activation_parts(
    recipe: Recipe, arch: Arch, s: Setting, trainable: list[str], passes: list[Pass]
) -> list[Part]:
    cfg, h = recipe.train, arch.hidden
    lay = _layout(arch, recipe, trainable)
    po = recipe.method.family == "po"
    plain = arch.model_type in PLAIN_DECODERS
    chunked = plain and cfg.logits_chunk > 0
    grad = [p for p in passes if p.grad]
    kept = 0
    for p in grad:
        if cfg.gradient_checkpointing:  # only each layer's input stays; the rest is recomputed
            per_token = lay.live * s.stream * h
        else:
            per_token = lay.live * _layer_bytes(arch, s, p.length)
            per_token += sum(
                s.compute * _trainable_width(arch, trainable, layer)
                for layer in range(lay.first + 1, lay.top + 1)
            )
            per_token += s.compute * lay.partial_width
            if s.autocast and s.weight == 4:
                # autocast casts each frozen weight to bf16 per call and the linear layer keeps
                # that copy for its input's gradient: once per pass, for every live layer
                kept += 2 * sum(_linear_params(arch, i) for i in range(lay.first + 1, lay.top + 1))
        if lay.shared_prefix:  # the output of layer first-1, cached per batch
            per_token += s.stream * h
        if po:  # final norm input (fp32) + the hidden states of scored tokens (head input)
            per_token += 4 * h + 4 + s.stream * h
            if p.name == "retain":  # the reference's hidden states, input of the KL/MSE chunks
                per_token += s.stream * h
            if not (chunked and cfg.checkpoint_head):  # the head's fp32 log-probs stay
                per_token += (8 if p.name == "retain" else 4) * arch.vocab
        else:  # the RM losses keep (z - target) in fp32
            per_token += 4 * h
        kept += per_token * p.tokens
    if s.autocast and s.weight == 4:
        kept += 2 * sum(_numel(arch.shapes[n]) for n in trainable)  # cached once per step
    biggest = max(passes, key=lambda p: p.tokens)
    # One layer's forward in a no-grad reference pass while everything above is held: gate,
    # act(gate), up and product of the MLP, plus a few hidden-state tensors.
    work = biggest.tokens * (s.compute * 3 * arch.intermediate + 3 * s.stream * h)
    what = f"one layer's forward ({biggest.name}, {biggest.batch}x{biggest.length})"
    if cfg.gradient_checkpointing and lay.live:  # backward recomputes one layer at a time
        work += biggest.tokens * _layer_bytes(arch, s, biggest.length)
        what = f"one layer recomputed in backward ({biggest.batch}x{biggest.length})"
    if po:
        checkpointed = chunked and cfg.checkpoint_head
        head_tokens = head_chunk_tokens(cfg.logits_chunk, arch.vocab) or 0
        retain = next((p for p in passes if p.name == "retain"), None)
        if retain is not None:
            chunk = min(head_tokens, retain.tokens) if chunked else retain.tokens
            # Checkpointed chunks: the logits of the model and of the reference, their fp32
            # log-softmaxes, then exp, difference and product (KL, or the MSE's terms) in fp32.
            # Otherwise the fp32 terms are kept for backward (counted above): logits + a
            # temporary.
            per_value = 2 * s.compute + 5 * 4 if checkpointed else s.compute + 4
        else:  # the forget phase of a split step: log-probs of the scored tokens only
            scored = max(p.tokens for p in grad)
            chunk = min(head_tokens, scored) if chunked else scored
            # the logits, their fp32 copy and logsumexp's exp (softmax in backward)
            per_value = s.compute + 2 * 4 if checkpointed else s.compute + 4
        head = chunk * arch.vocab * per_value
        if head > work:
            work, what = head, f"LM-head chunk: {chunk} tokens x {arch.vocab:,} vocabulary"
    shape = ", ".join(f"{p.name} {p.batch}x{p.length}" for p in grad)
    if not lay.live:
        what_kept = "no layer keeps activations"
    elif cfg.gradient_checkpointing:
        what_kept = f"layers {lay.first + 1}-{lay.top} keep their inputs (checkpointing)"
    else:
        what_kept = f"layers {lay.first + 1}-{lay.top} keep activations"
        if lay.partial_width:
            what_kept += f", layer {lay.first} its trainable inputs"
    return [
        Part("activations", kept, f"{shape}; {what_kept}"),
        Part("working set", work, what),
    ]


# -- evaluation with quantized weights (--load-in) ---------------------------------------

# Bytes per value of a bitsandbytes-quantized linear weight: LLM.int8 keeps one int8 per value
# and one fp32 scale per output row; NF4/FP4 keep half a byte per value and one fp32 absmax
# per block of 64 values (no double quantization).
QUANT_BLOCK = 64


def quantized_weight_bytes(arch: Arch, weight: int) -> dict[str, int]:
    """The model's weight bytes for evaluation: unquantized (`weight` bytes a value), and with
    `--load-in 8bit` / `4bit`, where bitsandbytes replaces the decoder layers' linear weights
    and keeps the embeddings, the LM head, norms and biases at `weight` bytes."""
    linear = {
        n: _numel(shape)
        for n, shape in arch.shapes.items()
        if ".layers." in n and len(shape) == 2 and n.endswith(".weight")
    }
    rows = sum(arch.shapes[n][0] for n in linear)
    values = sum(linear.values())
    kept = (arch.params - values) * weight
    return {
        "full": arch.params * weight,
        "8bit": kept + values + 4 * rows,
        "4bit": kept + values // 2 + 4 * -(-values // QUANT_BLOCK),
    }


def _evaluation_note(arch: Arch, s: Setting) -> str:
    sizes = quantized_weight_bytes(arch, s.weight)
    return (
        f"evaluation weights (rnacli eval --load-in, rnacli attack quantize): {s.dtype} "
        f"{human(sizes['full'])}, 8bit {human(sizes['8bit'])}, 4bit {human(sizes['4bit'])}"
    )


# -- plan: recipe + config + device -> a verdict -------------------------------------------


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _device(recipe: Recipe, gpus: int) -> str:
    if recipe.model.device == "cpu":
        return "cpu"
    if recipe.model.device.startswith("cuda"):
        return "cuda"
    return "cuda" if gpus > 0 else "cpu"


def plan(
    recipe_path: str,
    overrides: list[str] | None = None,
    gpus: int = 1,
    gpu_memory_gib: float | None = None,
    strategy: str = "ddp",
) -> dict[str, Any]:
    """Estimate one training step's peak memory per device for a recipe, and whether it fits.

    gpus = 0 plans for the CPU (capacity: this machine's RAM unless gpu_memory_gib is given).
    DDP replicates everything on every GPU; FSDP shards the frozen weights (the trainable
    tensors, their gradients, masters and optimizer states stay whole on every GPU).

    Returns a dict for `render` (and JSON): `parts` (name, bytes, detail per row),
    `peak_bytes`, `capacity_bytes` (None when unknown), `fits` (None when unknown),
    `alternatives` (overrides that would fit, when it does not), `notes`, and the model's
    `architecture`, `decoder_layer`, `params`, `trainable_params`, `dtype`, `device`, `gpus`.
    """
    if gpus < 0:
        raise RnacliError(f"--gpus {gpus}: expected 0 (CPU) or more")
    if gpu_memory_gib is not None and gpu_memory_gib <= 0:
        raise RnacliError(f"--gpu-memory {gpu_memory_gib}: expected a size in GiB > 0")
    recipe = load_recipe(recipe_path, overrides)
    result, arch = step_verdict(recipe, gpus, gpu_memory_gib, strategy)
    result["alternatives"] = []
    if result["fits"] is False:
        result["alternatives"] = _alternatives(
            recipe_path,
            overrides or [],
            arch,
            result["device"],
            result["gpus"],
            result["capacity_bytes"],
            strategy,
        )
    return result


def step_verdict(
    recipe: Recipe, gpus: int = 1, gpu_memory_gib: float | None = None, strategy: str = "ddp"
) -> tuple[dict[str, Any], Arch]:
    """`plan`'s verdict for a loaded recipe, without the alternatives: (the result dict, the
    architecture). Raises RnacliError when the model has no config to plan with."""
    config, source = model_config(recipe.model.name, recipe.model.trust_remote_code)
    arch = architecture(config, source, recipe.model.trust_remote_code)
    device = _device(recipe, gpus)
    gpus = max(gpus, 1) if device == "cuda" else 0
    return _verdict(recipe, arch, device, gpus, gpu_memory_gib, strategy), arch


def _capacity(device: str, gpu_memory_gib: float | None) -> int | None:
    if gpu_memory_gib is not None:
        return int(gpu_memory_gib * GIB)
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return _ram_bytes() if device == "cpu" else None


def _verdict(
    recipe: Recipe,
    arch: Arch,
    device: str,
    gpus: int,
    gpu_memory_gib: float | None,
    strategy: str,
) -> dict[str, Any]:
    est = estimate(recipe, arch, device, gpus, strategy)
    capacity = _capacity(device, gpu_memory_gib)
    peak = est["peak_bytes"]
    return {
        "recipe": recipe.name,
        "model": recipe.model.name,
        "config_source": arch.source,
        "architecture": arch.architecture,
        "decoder_layer": arch.layer_class,
        "device": device,
        "gpus": gpus,
        "strategy": strategy if gpus > 1 else None,
        "dtype": est["dtype"],
        "params": arch.params,
        "trainable_params": est["trainable_params"],
        "trainable_tensors": est["trainable_tensors"],
        "optimizer": recipe.train.optimizer,
        "parts": [asdict(p) for p in est["parts"]],
        "tensor_bytes": est["tensor_bytes"],
        "peak_bytes": peak,
        "peak_phase": est["peak_phase"],
        "capacity_bytes": capacity,
        "fits": None if capacity is None else peak <= capacity,
        "notes": [
            *_notes(recipe, device, gpus, strategy, est["dtype"]),
            _evaluation_note(arch, _setting(recipe, device)),
        ],
        "evaluation_weight_bytes": quantized_weight_bytes(arch, _setting(recipe, device).weight),
    }


def _alternatives(
    recipe_path: str,
    overrides: list[str],
    arch: Arch,
    device: str,
    gpus: int,
    capacity: int,
    strategy: str,
) -> list[dict[str, Any]]:
    """Settings that would make the step fit, cheapest first (each estimated the same way)."""
    # bitsandbytes' 8-bit AdamW steps on CUDA and on the CPU alike
    tries = [
        ["train.optimizer=adamw8bit"],
        ["train.gradient_checkpointing=true"],
        ["train.optimizer=adamw8bit", "train.gradient_checkpointing=true"],
    ]
    recipe = load_recipe(recipe_path, overrides)
    batch = recipe.data.batch_size
    while batch > 1:
        batch //= 2
        accum = recipe.train.grad_accum * (recipe.data.batch_size // batch)
        tries.append(
            [
                "train.gradient_checkpointing=true",
                f"data.batch_size={batch}",
                f"train.grad_accum={accum}",
            ]
        )
    found = []
    for extra in tries:
        variant = load_recipe(recipe_path, [*overrides, *extra])
        if variant.to_dict() == recipe.to_dict():
            continue
        peak = estimate(variant, arch, device, gpus, strategy)["peak_bytes"]
        found.append({"set": extra, "peak_bytes": peak, "fits": peak <= capacity})
        if peak <= capacity:
            break
    return found


def _notes(recipe: Recipe, device: str, gpus: int, strategy: str, dtype: str) -> list[str]:
    notes = []
    if recipe.train.optimizer == "adamw":
        notes.append(
            f"AdamW keeps its two states in the parameters' dtype ({dtype}); 8-bit AdamW "
            "(--set train.optimizer=adamw8bit) takes 1 byte each"
        )
    if gpus > 1 and strategy == "ddp":
        notes.append(
            f"DDP: each of the {gpus} GPUs holds the whole model, the reference, gradients "
            "and optimizer states, and its own batch of data.batch_size: nothing is divided; "
            f"the step sees {gpus} x data.batch_size sequences"
        )
    if gpus > 1 and strategy == "fsdp":
        notes.append(
            f"FSDP: the frozen weights are sharded over the {gpus} GPUs; the trainable tensors "
            "stay whole on every GPU (with their gradients, masters and optimizer states), and "
            "activations are not divided; each GPU trains on its own batch of data.batch_size"
        )
    if device == "cpu":
        notes.append("tensors only: the Python process (torch, transformers) adds ~0.4 GiB")
    notes.append(
        "batches taken as padded to the max lengths (worst case); activations from a per-layer "
        "inventory of what autograd keeps, checked against torch's MemTracker on tiny models"
    )
    return notes


# -- rendering --------------------------------------------------------------------------------


def human(n: int | float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.1f} MiB"


def render(result: dict[str, Any]) -> Group:
    """The plan as a rich table (one row per part) and a verdict line."""
    where = (
        "CPU"
        if result["device"] == "cpu"
        else f"{result['gpus']} GPU{'s' if result['gpus'] > 1 else ''}"
        + (f" ({result['strategy'].upper()})" if result["strategy"] else "")
    )
    title = (
        f"{result['recipe']}: {result['model']} ({result['architecture']}, "
        f"{result['params'] / 1e9:.2f}B params, {result['dtype']}) on {where}"
    )
    # the recipe's and the model's names are the user's: escaped (rich would eat `[seed=2]`)
    table = Table(title=escape(title), title_justify="left")
    table.add_column("part")
    table.add_column("per device", justify="right")
    table.add_column("what")
    for part in result["parts"]:
        table.add_row(escape(part["name"]), human(part["bytes"]), escape(part["detail"]))
    table.add_section()
    phase = f"one training step, at its {result['peak_phase']}"
    table.add_row("peak", human(result["peak_bytes"]), phase, style="bold")
    lines: list[Any] = [table]
    capacity = result["capacity_bytes"]
    if capacity is None:
        lines.append(Text("give --gpu-memory GIB to check the fit", style="yellow"))
    else:
        share = result["peak_bytes"] / capacity
        verdict = "fits" if result["fits"] else "does not fit"
        lines.append(
            Text(
                f"{verdict}: {human(result['peak_bytes'])} of {human(capacity)} "
                f"per device ({share:.0%})",
                style="bold green" if result["fits"] else "bold red",
            )
        )
    for alt in result.get("alternatives", []):
        sets = " ".join(f"--set {s}" for s in alt["set"])
        mark = "fits" if alt["fits"] else "still too big"
        lines.append(Text(f"  {sets}: {human(alt['peak_bytes'])} ({mark})"))
    lines += [Text(f"note: {n}", style="dim") for n in result["notes"]]
    lines.append(Text(f"config: {result['config_source']}", style="dim"))
    return Group(*lines)


__all__ = [
    "KNOWN_CONFIGS",
    "Arch",
    "architecture",
    "estimate",
    "model_config",
    "plan",
    "render",
    "step_verdict",
]
