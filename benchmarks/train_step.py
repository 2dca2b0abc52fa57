"""Training-step cost on SmolLM2-135M (batch 4 x 256 tokens), every comparison in one run:

1. RNA on vs off (RMU and NPO+KL): the noise rides in a pass computed anyway.
2. An RMU step, ours (delta reference, shared prefix, forward truncated at layer l) vs the
   reference-code style (a second, deep-copied model; full forwards with the LM head).
3. Peak memory of an NPO+KL step, ours (delta reference, LM head in checkpointed chunks, the
   forget loss backpropagated before the retain pass runs) vs the reference-code style (a
   deep-copied reference, full logits, one backward), measured with torch's MemTracker (every
   tensor: weights, copies, activations, gradients, optimizer states), next to what
   `rnacli plan` estimates for both.

    python benchmarks/train_step.py [--reps 5] [--autocast] [--memory-only]
                                    [--device cuda] [--synthetic]

`--synthetic` draws random token ids instead of reading MMLU text (speed and memory do not
depend on the tokens; for machines without the data); `--model` takes a local folder too.

Configurations are interleaved step by step, and medians reported, because this machine is noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rnacli.data import load_corpus
from rnacli.data.batches import Seq, StepBatch, document_batch
from rnacli.methods import build_method, build_retain
from rnacli.methods.rna import Noise
from rnacli.models.loading import load_model
from rnacli.recipe import MethodConfig, TrainConfig, recipe_from_dict
from rnacli.runtime.memory import in_module, peak_tensor_bytes
from rnacli.training.loop import default_trainable, select_trainable
from rnacli.training.passes import Passes
from rnacli.training.plan import architecture, estimate, model_config
from rnacli.training.step import head_chunk_tokens, unlearning_backward

# Passes settings and the split backward; the recipe keys they correspond to, for the plan.
# Our LM-head chunk is the recipe default's (1024 tokens, capped at 2^24 logits: 341 tokens
# for SmolLM2's 49,152-word vocabulary).
OURS = {
    "reference": "delta",
    "shared_prefix": True,
    "truncate": True,
    "chunk_tokens": TrainConfig.model_fields["logits_chunk"].default,
    "split": True,
}
REFERENCE_STYLE = {
    "reference": "copy",
    "shared_prefix": False,
    "truncate": False,
    "chunk_tokens": None,
    "split": False,
}
RECIPE_KEYS = {
    "reference": "reference",
    "shared_prefix": "shared_prefix",
    "truncate": "truncated_forward",
    "chunk_tokens": "logits_chunk",
    "split": "split_backward",
}


def make_batch(tokenizer, tokens: int, size: int, synthetic: bool = False) -> StepBatch:
    """Forget and retain batches of `size` sequences of exactly `tokens` tokens."""
    if synthetic:
        gen = torch.Generator().manual_seed(0)
        vocab = min(len(tokenizer), 32000)
        forget, retain = (
            Seq(ids, torch.ones_like(ids), torch.ones_like(ids))
            for ids in torch.randint(vocab, (2, size, tokens), generator=gen)
        )
        return StepBatch(0, 0, forget, retain)
    text = " ".join(load_corpus("qasplit:mmlu@all")[:4000])
    ids = tokenizer(text)["input_ids"]
    docs = [
        tokenizer.decode(ids[i * 2 * tokens : (i * 2 + 1) * 2 * tokens]) for i in range(2 * size)
    ]
    forget = document_batch(tokenizer, docs[:size], tokens)
    retain = document_batch(tokenizer, docs[size:], tokens)
    return StepBatch(0, 0, forget, retain)


def setup(model, trainable, method_name, retain_loss, engineering):
    cfg = MethodConfig(name=method_name, retain_loss=retain_loss)
    method = build_method(cfg, model.config.hidden_size, 1, seed=0)
    settings = {k: v for k, v in engineering.items() if k != "split"}
    if settings["chunk_tokens"]:
        settings["chunk_tokens"] = head_chunk_tokens(
            settings["chunk_tokens"], len(model.lm_head.weight)
        )
    passes = Passes(model, list(trainable), **settings)
    optimizer = torch.optim.AdamW(list(trainable.values()), lr=1e-6)
    return method, build_retain(cfg), passes, optimizer, engineering["split"]


def one_step(model, parts, batch, rna: bool, step: int) -> float:
    method, retain, passes, optimizer, split = parts
    device = batch.forget.input_ids.device
    noise = Noise([7], 0.03, torch.Generator(device).manual_seed(step)) if rna else None
    _sync(device)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    batch.forget.cache.clear()
    batch.retain.cache.clear()
    unlearning_backward(
        method, retain, passes, batch, 100.0, noise, split=split, run_forward=in_module
    )
    optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def planned_peak(args, engineering: dict) -> int:
    """What `rnacli plan` estimates for the same NPO+KL step (tensor bytes: on CUDA without
    the context and allocator allowance, which MemTracker does not see either)."""
    train = {RECIPE_KEYS[k]: v for k, v in engineering.items()}
    train["logits_chunk"] = train["logits_chunk"] or 0
    train["autocast"] = args.autocast
    recipe = recipe_from_dict(
        {
            "model": {"name": args.model, "device": args.device},
            "data": {
                "forget": ["benchmark"],
                "retain": "benchmark",
                "forget_max_length": args.tokens,
                "retain_max_length": args.tokens,
                "batch_size": args.batch,
            },
            "method": {"name": "npo", "retain_loss": "kl", "layer": 7},
            "train": train,
        },
        "train_step.toml",
    )
    config, source = model_config(args.model)
    device = torch.device(args.device).type
    return estimate(recipe, architecture(config, source), device=device)["tensor_bytes"]


def peak_memory(model, trainable, batch, engineering, device: torch.device) -> int:
    """Peak bytes of all tensors during one NPO+KL step (model weights included; a deep-copied
    reference is created inside the measured step, so it counts)."""
    holder = {}

    def work() -> None:
        holder["parts"] = setup(model, trainable, "npo", "kl", engineering)
        one_step(model, holder["parts"], batch, rna=True, step=0)

    peak = peak_tensor_bytes(work, model, device=device)["Total"]
    holder["parts"][2].ref_model = None
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast (CPU)")
    parser.add_argument("--memory-only", action="store_true", help="skip the timings")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 there)")
    parser.add_argument("--synthetic", action="store_true", help="random tokens, no data")
    args = parser.parse_args()

    model, tokenizer = load_model(args.model, device=args.device)
    device = next(model.parameters()).device
    trainable = select_trainable(model, default_trainable(7))
    batch = make_batch(tokenizer, args.tokens, args.batch, args.synthetic).to(device)
    print(
        f"{args.model}, batch {args.batch} x {args.tokens} tokens, {len(trainable)} trainable "
        f"tensors, {device} ({next(model.parameters()).dtype}), "
        f"{torch.get_num_threads()} threads, autocast={args.autocast}"
    )

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.autocast)
    if not args.memory_only:
        timings(args, model, trainable, batch, autocast)
    memory(args, model, trainable, batch, autocast, device)


def timings(args, model, trainable, batch, autocast) -> None:
    configs = {
        "rmu ours": (setup(model, trainable, "rmu", None, OURS), False),
        "rmu ours + RNA": (setup(model, trainable, "rmu", None, OURS), True),
        "rmu reference-code style": (setup(model, trainable, "rmu", None, REFERENCE_STYLE), False),
        "npo+kl ours": (setup(model, trainable, "npo", "kl", OURS), False),
        "npo+kl ours + RNA": (setup(model, trainable, "npo", "kl", OURS), True),
    }
    times: dict[str, list[float]] = {name: [] for name in configs}
    with autocast:
        for rep in range(args.reps + 1):  # the first round warms up
            for name, (parts, rna) in configs.items():
                seconds = one_step(model, parts, batch, rna, rep)
                if rep:
                    times[name].append(seconds)
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"  {name:28s} {value:6.2f} s/step  (median of {args.reps})")
    rna_rmu = median["rmu ours + RNA"] / median["rmu ours"] - 1
    rna_npo = median["npo+kl ours + RNA"] / median["npo+kl ours"] - 1
    print(f"RNA overhead: RMU {100 * rna_rmu:+.1f} %, NPO+KL {100 * rna_npo:+.1f} %")
    speedup = median["rmu reference-code style"] / median["rmu ours"]
    print(
        f"RMU step, ours vs reference-code style (two models, full forward): {speedup:.2f}x faster"
    )
    for name in configs:
        configs[name][0][2].ref_model = None  # free the copies before measuring memory


def memory(args, model, trainable, batch, autocast, device: torch.device) -> None:
    variants = {
        "ours": OURS,
        "ours, one backward": {**OURS, "split": False},
        "reference-code style": REFERENCE_STYLE,
    }
    mib = 1 << 20
    peaks = {}
    print("NPO+KL step peak memory (all tensors, MemTracker) and rnacli plan's estimate:")
    for name, engineering in variants.items():
        with autocast:
            peaks[name] = peak_memory(model, trainable, batch, engineering, device)
        planned = planned_peak(args, engineering)
        print(
            f"  {name:24s} measured {peaks[name] / mib:6.0f} MiB   plan {planned / mib:6.0f} MiB "
            f"({planned / peaks[name] - 1:+.0%})"
        )
    ours, style = peaks["ours"], peaks["reference-code style"]
    print(
        f"NPO+KL step peak memory: ours {ours / mib:.0f} MiB, reference-code style (deep copy, "
        f"full logits, one backward) {style / mib:.0f} MiB -> {ours / style:.2f}x "
        f"(ours with one backward: {peaks['ours, one backward'] / style:.2f}x)"
    )


if __name__ == "__main__":
    main()
