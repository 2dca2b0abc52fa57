"""Training-step cost on SmolLM2-135M (batch 4 x 256 tokens), every comparison in one run:

1. RNA on vs off (RMU and NPO+KL): the noise rides in a pass computed anyway.
2. An RMU step, ours (delta reference, shared prefix, forward truncated at layer l) vs the
   reference-code style (a second, deep-copied model; full forwards with the LM head).
3. Peak memory of an NPO+KL step, ours (delta reference, LM head in checkpointed chunks) vs a
   deep-copied reference with full logits, measured with torch's MemTracker (every tensor:
   weights, copies, activations, gradients, optimizer states).

    python benchmarks/train_step.py [--reps 5] [--autocast]

Configurations are interleaved step by step, and medians reported, because this machine is noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch

from rnacli.data import load_corpus
from rnacli.data.batches import document_batch
from rnacli.memory import in_module, peak_tensor_bytes
from rnacli.methods import build_method, build_retain
from rnacli.models import load_model
from rnacli.passes import Passes
from rnacli.recipe import MethodConfig
from rnacli.rna import Noise
from rnacli.step import unlearning_loss
from rnacli.train import default_trainable, select_trainable

OURS = {"reference": "delta", "shared_prefix": True, "truncate": True, "chunk_tokens": 1024}
REFERENCE_STYLE = {
    "reference": "copy",
    "shared_prefix": False,
    "truncate": False,
    "chunk_tokens": None,
}


def make_batch(tokenizer, tokens: int, size: int) -> SimpleNamespace:
    """Forget and retain batches of `size` sequences of exactly `tokens` tokens."""
    text = " ".join(load_corpus("qasplit:mmlu@all")[:4000])
    ids = tokenizer(text)["input_ids"]
    docs = [
        tokenizer.decode(ids[i * 2 * tokens : (i * 2 + 1) * 2 * tokens]) for i in range(2 * size)
    ]
    forget = document_batch(tokenizer, docs[:size], tokens)
    retain = document_batch(tokenizer, docs[size:], tokens)
    return SimpleNamespace(forget=forget, retain=retain, refusal=None, corpus=0)


def setup(model, trainable, method_name, retain_loss, engineering):
    cfg = MethodConfig(name=method_name, retain_loss=retain_loss)
    method = build_method(cfg, model.config.hidden_size, 1, seed=0)
    passes = Passes(model, list(trainable), **engineering)
    optimizer = torch.optim.AdamW(list(trainable.values()), lr=1e-6)
    return method, build_retain(cfg), passes, optimizer


def one_step(model, parts, batch, rna: bool, step: int) -> float:
    method, retain, passes, optimizer = parts
    noise = Noise([7], 0.03, torch.Generator().manual_seed(step)) if rna else None
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    batch.forget.cache.clear()
    batch.retain.cache.clear()
    loss, _ = in_module(lambda: unlearning_loss(method, retain, passes, batch, 100.0, noise))
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def peak_memory(model, trainable, batch, engineering) -> int:
    """Peak bytes of all tensors during one NPO+KL step (model weights included; a deep-copied
    reference is created inside the measured step, so it counts)."""
    holder = {}

    def work() -> None:
        holder["parts"] = setup(model, trainable, "npo", "kl", engineering)
        one_step(model, holder["parts"], batch, rna=True, step=0)

    peak = peak_tensor_bytes(work, model)["Total"]
    holder["parts"][2].ref_model = None
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast (CPU)")
    args = parser.parse_args()

    model, tokenizer = load_model(args.model, device="cpu")
    trainable = select_trainable(model, default_trainable(7))
    batch = make_batch(tokenizer, args.tokens, args.batch)
    print(
        f"{args.model}, batch {args.batch} x {args.tokens} tokens, {len(trainable)} trainable "
        f"tensors, {torch.get_num_threads()} threads, autocast={args.autocast}"
    )

    configs = {
        "rmu ours": (setup(model, trainable, "rmu", None, OURS), False),
        "rmu ours + RNA": (setup(model, trainable, "rmu", None, OURS), True),
        "rmu reference-code style": (setup(model, trainable, "rmu", None, REFERENCE_STYLE), False),
        "npo+kl ours": (setup(model, trainable, "npo", "kl", OURS), False),
        "npo+kl ours + RNA": (setup(model, trainable, "npo", "kl", OURS), True),
    }
    times: dict[str, list[float]] = {name: [] for name in configs}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast)
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
    del configs

    with autocast:
        ours = peak_memory(model, trainable, batch, OURS)
        copy = peak_memory(model, trainable, batch, REFERENCE_STYLE)
        copy_chunked = peak_memory(model, trainable, batch, {**OURS, "reference": "copy"})
    mib = 1 << 20
    print(
        f"NPO+KL step peak memory: ours {ours / mib:.0f} MiB, deep-copied reference with "
        f"full logits {copy / mib:.0f} MiB -> {ours / copy:.2f}x "
        f"(deep copy with our chunked head: {copy_chunked / mib:.0f} MiB, "
        f"{ours / copy_chunked:.2f}x)"
    )


if __name__ == "__main__":
    main()
