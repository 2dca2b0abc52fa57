"""Native evaluator vs lm-eval on the same model and the same MMLU questions, in one run.

    python benchmarks/eval_speed.py [--model smollm2-135m] [--n 200] [--batch-size 4]

Prints questions/s of each backend, their ratio, and whether every prediction agrees.
"""

from __future__ import annotations

import argparse
import time

import torch

from rnacli.evaluate.harness import evaluate_with_lm_eval
from rnacli.evaluate.mcq import evaluate_mcq
from rnacli.evaluate.tasks import resolve_task
from rnacli.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model, tokenizer = load_model(args.model)
    [task] = resolve_task("mmlu", limit=args.n, seed=args.seed)
    print(
        f"model {args.model}, {task.name}: {len(task.records)} questions, "
        f"batch size {args.batch_size}, {torch.get_num_threads()} threads"
    )

    start = time.perf_counter()
    native = evaluate_mcq(
        model, tokenizer, task.records, task.description, batch_size=args.batch_size
    )
    native_s = time.perf_counter() - start

    start = time.perf_counter()
    harness = evaluate_with_lm_eval(model, tokenizer, [task], batch_size=args.batch_size)[task.name]
    harness_s = time.perf_counter() - start

    n = len(task.records)
    agree = sum(a == b for a, b in zip(native.predictions, harness.predictions, strict=True))
    print(f"native : {n / native_s:6.2f} questions/s  ({native_s:.1f} s)  acc {native.acc:.3f}")
    print(f"lm-eval: {n / harness_s:6.2f} questions/s  ({harness_s:.1f} s)  acc {harness.acc:.3f}")
    print(f"speed-up native/lm-eval: {harness_s / native_s:.2f}x")
    print(f"predictions agree: {agree}/{n} ({'all' if agree == n else 'NOT all'})")


if __name__ == "__main__":
    main()
