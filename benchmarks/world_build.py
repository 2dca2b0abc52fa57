"""What `rnacli world build` costs, and how close it runs to the machine's matmul rate.

Builds the default world from scratch (in a temporary cache: the user's cached world and the
runs trained on it are never touched; the embedded model is read from the user cache), then
prints, from one run:

- the budget: items and tokens per epoch, epochs, training FLOPs per token and in all;
- where the time went: loading, training, the final accuracy check;
- the FLOP rate the training achieved, and its ratio to a plain matmul's on the same machine
  (SmolLM2's MLP shape at the build's tokens per batch, measured right before and after);
- what was learned: cloze and letter accuracy on forget and retain questions.

    python benchmarks/world_build.py [--set epochs=8 ...] [--people 80 --forget-fraction 0.25]
    python benchmarks/world_build.py --seeds 0,1,2,3,4

`--seeds` builds each of those worlds from scratch instead and prints, per world seed, the
epochs it took (the schedule's, plus those trained on while the cloze check was below the
target), the minutes, and the cloze accuracy on forget and retain; a world still below the
target at the cap is reported as such.

FLOPs per token (Kaplan et al.'s 2N rule, counted per layer): the forward pass is 2 x the
linear-layer parameters of every decoder layer, plus attention's two [T x T] products; the LM
head (2 x d x V) runs at the scored tokens only. Backward costs 2 x forward for the layers that
train (input and weight gradients) and the head's input gradient at the scored tokens.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def linear_params_per_layer(config) -> int:
    d, inter = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    return d * d * 2 + d * kv * 2 + 3 * d * inter  # q, o; k, v; gate, up, down


def training_flops(config, tokens: int, scored: int, mean_len: float, first_layer: int) -> dict:
    """FLOPs of the build's forward and backward passes (see the module docstring)."""
    layers = config.num_hidden_layers
    per_layer = 2 * linear_params_per_layer(config) + 4 * mean_len * config.hidden_size
    forward = tokens * layers * per_layer + scored * 2 * config.hidden_size * config.vocab_size
    trained = layers - first_layer
    backward = (
        2 * tokens * trained * per_layer + scored * 2 * config.hidden_size * config.vocab_size
    )
    return {"forward": forward, "backward": backward, "total": forward + backward}


def matmul_gflops(rows: int, config, bf16: bool, reps: int = 7) -> float:
    """Median GFLOPS of [rows x d] @ [d x intermediate], the MLP's shape at the batch's size."""
    a = torch.randn(rows, config.hidden_size)
    b = torch.randn(config.hidden_size, config.intermediate_size)
    flops = 2.0 * rows * config.hidden_size * config.intermediate_size
    rates = []
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        a @ b
        for _ in range(reps):
            start = time.perf_counter()
            a @ b
            rates.append(flops / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def seed_list(text: str) -> list[int]:
    """argparse type: '0,1,2' -> [0, 1, 2]."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected integers, e.g. 0,1,2") from None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=None)
    parser.add_argument("--forget-fraction", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=seed_list, default=None, help="e.g. 0,1,2,3,4")
    parser.add_argument("--set", dest="set_", action="append", default=[])
    return parser.parse_args()


@contextmanager
def fresh_cache() -> Iterator[Path]:
    """A temporary RNACLI_CACHE_DIR: the user's cached world and the runs trained on it are
    never touched, but the embedded model's conversion and the CPU verdict are reused."""
    before = os.environ.get("RNACLI_CACHE_DIR")
    user_cache = Path(before or Path.home() / ".cache" / "rnacli")
    with tempfile.TemporaryDirectory(prefix="rnacli-world-bench-") as tmp:
        for part in ("models", "assets", "precision"):
            if (user_cache / part).exists():
                (Path(tmp) / part).symlink_to(user_cache / part)
        os.environ["RNACLI_CACHE_DIR"] = tmp
        try:
            yield Path(tmp)
        finally:
            # the next build (--seeds) links the user's cache again, not this one
            if before is None:
                os.environ.pop("RNACLI_CACHE_DIR", None)
            else:
                os.environ["RNACLI_CACHE_DIR"] = before
            if (Path(tmp) / "world").exists():
                shutil.rmtree(Path(tmp) / "world")  # before the temp folder goes: big files


def build_once(args: argparse.Namespace) -> tuple:
    """(learning config, the base's transformers config, build.json, wall seconds) of one
    build from scratch, in a fresh cache."""
    with fresh_cache():
        # imported here: the cache folder is read when they are first used
        from rnacli.models.loading import load_model
        from rnacli.recipe import parse_override
        from rnacli.world.generate import WorldSpec
        from rnacli.world.learn import build, build_info, learn_config

        defaults = WorldSpec()
        spec = WorldSpec(
            people=args.people or defaults.people,
            seed=args.seed,
            forget_fraction=args.forget_fraction or defaults.forget_fraction,
        )
        overrides = {}
        for item in args.set_:
            keys, value = parse_override(item)
            overrides[".".join(keys)] = value
        config = learn_config(overrides)
        base, _ = load_model(config.base, device="cpu")
        arch = base.config
        del base
        print(f"world {spec.key}, learning {config.key}, {torch.get_num_threads()} threads")
        started = time.perf_counter()
        build(spec, config, force=True)
        wall = time.perf_counter() - started
        return config, arch, build_info(spec, config), wall


def seed_rows(args: argparse.Namespace) -> None:
    """`--seeds`: one build from scratch per world seed; a line each as it ends, then all."""
    from rnacli.errors import RnacliError

    rows = []
    for seed in args.seeds:
        args.seed = seed
        started = time.perf_counter()
        try:
            config, _, info, wall = build_once(args)
        except RnacliError as e:  # below the target at the cap: the build's own line
            minutes = (time.perf_counter() - started) / 60
            rows.append(f"seed {seed}: below the target after {minutes:.1f} min: {e}")
        else:
            acc = info["accuracy"]
            extra = info.get("extra_epochs", 0)
            checks = [  # after the schedule, then after each extra epoch
                f"{100 * c['forget']:.0f}/{100 * c['retain']:.0f}"
                for c in [info.get("schedule_check"), *(h.get("check") for h in info["history"])]
                if c
            ]
            rows.append(
                f"seed {seed}: {len(info['history'])} epochs ({config.epochs} + {extra} extra), "
                f"{wall / 60:.1f} min, cloze forget {100 * acc['forget']:.1f} %, "
                f"retain {100 * acc['retain']:.1f} %"
                + (f"; cloze checks (forget/retain %) {', '.join(checks)}" if checks else "")
                + f"; fingerprint {info['fingerprint'].split(':')[-1][:16]}"
            )
        print(rows[-1], flush=True)
    print(f"\nworld builds, {torch.get_num_threads()} threads:", *rows, sep="\n")


def main() -> None:
    args = parse_args()
    if args.seeds:
        seed_rows(args)
        return
    config, arch, info, wall = build_once(args)
    seconds = info["seconds"]
    tokens, scored, steps = info["tokens"], info["scored_tokens"], info["steps"]
    flops = training_flops(
        arch, tokens, scored, tokens / sum(info["items_per_epoch"]), config.first_layer
    )
    rows = round(tokens / steps)  # tokens in an average batch
    bf16 = info["autocast_bf16"]
    matmul = statistics.mean(matmul_gflops(rows, arch, bf16) for _ in range(2))
    achieved = flops["total"] / seconds["training"] / 1e9
    epochs = len(info["history"])
    shape = f"[{rows}x{arch.hidden_size}]@[{arch.hidden_size}x{arch.intermediate_size}]"
    lines = [
        "",
        "budget",
        f"  epochs                  {epochs}",
        f"  items per epoch         {info['items_per_epoch'][0]} (facts + letter questions)",
        f"  tokens per epoch        {tokens / epochs:,.0f} (scored {scored / epochs:,.0f})",
        f"  optimizer steps         {steps} (batch {config.batch_size}, ~{rows} tokens)",
        f"  FLOPs per token         {flops['total'] / tokens / 1e6:,.0f} M (fwd + bwd)",
        f"  training FLOPs          {flops['total'] / 1e12:,.1f} T",
        "time",
        f"  build (wall)            {wall:,.0f} s = {wall / 60:.1f} min",
        f"  loading the base        {seconds['loading']:,.0f} s",
        f"  training                {seconds['training']:,.0f} s",
        f"  accuracy check          {seconds['check']:,.0f} s ({info['check_questions']} each)",
        "rate",
        f"  precision               {'bf16 autocast' if bf16 else 'fp32'}",
        f"  training achieved       {achieved:,.1f} GFLOPS",
        f"  plain matmul {shape}  {matmul:,.1f} GFLOPS",
        f"  ratio                   {achieved / matmul:.2f}",
        "learned (accuracy on the check sample)",
        *(f"  {key:<22}  {100 * value:.1f} %" for key, value in info["accuracy"].items()),
        f"fingerprint {info['fingerprint']}",
    ]
    print("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
