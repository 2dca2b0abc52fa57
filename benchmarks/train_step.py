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
from rnacli.methods.rna import Noise
from rnacli.models.loading import load_model
from rnacli.recipe import Recipe, TrainConfig, recipe_from_dict
from rnacli.runtime.memory import in_module, peak_tensor_bytes
from rnacli.training.loop import UnlearningRecipe
from rnacli.training.plan import architecture, estimate, model_config
from rnacli.training.setup import default_trainable, select_trainable
from rnacli.training.step import unlearning_backward

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


def step_recipe(args, method: str, retain_loss: str | None, engineering: dict) -> Recipe:
    """The recipe of the measured step: what `rnacli plan` estimates and what the step runs."""
    train = {RECIPE_KEYS[k]: v for k, v in engineering.items()}
    train["logits_chunk"] = train["logits_chunk"] or 0
    train["autocast"] = args.autocast
    return recipe_from_dict(
        {
            "model": {"name": args.model, "device": args.device},
            "data": {
                "forget": ["benchmark"],
                "retain": "benchmark",
                "forget_max_length": args.tokens,
                "retain_max_length": args.tokens,
                "batch_size": args.batch,
            },
            "method": {"name": method, "retain_loss": retain_loss, "layer": 7},
            "train": train,
        },
        "train_step.toml",
    )


def setup(args, loaded, method: str, retain_loss: str | None, engineering) -> UnlearningRecipe:
    """The run's method, passes and optimizer on the loaded model (the recipe's own setup)."""
    run = UnlearningRecipe(step_recipe(args, method, retain_loss, engineering))
    run.setup_model(loaded)
    run.setup_method()
    run.setup_optimizer()
    return run


def one_step(run: UnlearningRecipe, batch, rna: bool, step: int) -> float:
    device = batch.forget.input_ids.device
    noise = Noise([7], 0.03, torch.Generator(device).manual_seed(step)) if rna else None
    _sync(device)
    start = time.perf_counter()
    run.optimizer.zero_grad(set_to_none=True)
    batch.forget.cache.clear()
    batch.retain.cache.clear()
    split = run.cfg.split_backward
    unlearning_backward(
        run.method, run.retain, run.passes, batch, 100.0, noise, split=split, run_forward=in_module
    )
    run.optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def planned_peak(args, engineering: dict) -> int:
    """What `rnacli plan` estimates for the same NPO+KL step (tensor bytes: on CUDA without
    the context and allocator allowance, which MemTracker does not see either)."""
    recipe = step_recipe(args, "npo", "kl", engineering)
    config, source = model_config(args.model)
    device = torch.device(args.device).type
    return estimate(recipe, architecture(config, source), device=device)["tensor_bytes"]


def peak_memory(args, loaded, batch, engineering, device: torch.device) -> int:
    """Peak bytes of all tensors during one NPO+KL step (model weights included; a deep-copied
    reference is created inside the measured step, so it counts)."""
    run = UnlearningRecipe(step_recipe(args, "npo", "kl", engineering))
    run.setup_model(loaded)

    def work() -> None:
        run.setup_method()
        run.setup_optimizer()
        one_step(run, batch, rna=True, step=0)

    peak = peak_tensor_bytes(work, loaded[0], device=device)["Total"]
    run.passes.ref_model = None
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
    loaded = (model, tokenizer, trainable)
    if not args.memory_only:
        timings(args, loaded, batch, autocast)
    memory(args, loaded, batch, autocast, device)


def timings(args, loaded, batch, autocast) -> None:
    configs = {
        "rmu ours": (setup(args, loaded, "rmu", None, OURS), False),
        "rmu ours + RNA": (setup(args, loaded, "rmu", None, OURS), True),
        "rmu reference-code style": (setup(args, loaded, "rmu", None, REFERENCE_STYLE), False),
        "npo+kl ours": (setup(args, loaded, "npo", "kl", OURS), False),
        "npo+kl ours + RNA": (setup(args, loaded, "npo", "kl", OURS), True),
    }
    times: dict[str, list[float]] = {name: [] for name in configs}
    with autocast:
        for rep in range(args.reps + 1):  # the first round warms up
            for name, (run, rna) in configs.items():
                seconds = one_step(run, batch, rna, rep)
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
    for run, _ in configs.values():
        run.passes.ref_model = None  # free the copies before measuring memory


def memory(args, loaded, batch, autocast, device: torch.device) -> None:
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
            peaks[name] = peak_memory(args, loaded, batch, engineering, device)
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
