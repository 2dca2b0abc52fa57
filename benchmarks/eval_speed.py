"""Native evaluator vs lm-eval on the same model and the same MMLU questions, in one run:
letter multiple choice (" A".." D" after the lettered prompt) and cloze (each choice's text
after the question, several tokens per choice).

    python benchmarks/eval_speed.py [--model smollm2-135m] [--n 200] [--cloze-n 100]
                                    [--batch-size 4] [--rounds 1]

Per form: questions/s of each backend (median over rounds; the backends alternate which runs
first, because this machine is shared and noisy), their ratio, whether every prediction agrees,
and the tokens the native evaluator computed: how many were padding, how many the shared prefix
saved, against one sequence per question (letters) or per choice (cloze), as lm-eval lays
them out.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from rnacli.evaluate.harness import evaluate_with_lm_eval
from rnacli.evaluate.mcq import evaluate_mcq, task_inputs
from rnacli.evaluate.scoring import layout_stats
from rnacli.evaluate.tasks import TaskDocs, resolve_task
from rnacli.models.loading import load_model


def native(model, tokenizer, task: TaskDocs, batch_size: int):
    return evaluate_mcq(
        model,
        tokenizer,
        task.records,
        task.description,
        batch_size=batch_size,
        scoring=task.scoring,
        progress=False,
    )


def compare(model, tokenizer, task: TaskDocs, batch_size: int, rounds: int) -> float:
    times: dict[str, list[float]] = {"native": [], "lm-eval": []}
    results = {}
    for r in range(rounds):
        for backend in ("native", "lm-eval") if r % 2 == 0 else ("lm-eval", "native"):
            start = time.perf_counter()
            if backend == "native":
                results[backend] = native(model, tokenizer, task, batch_size)
            else:
                results[backend] = evaluate_with_lm_eval(
                    model, tokenizer, [task], batch_size=batch_size
                )[task.name]
            times[backend].append(time.perf_counter() - start)
    n = len(task.records)
    median = {k: statistics.median(v) for k, v in times.items()}
    ours, theirs = results["native"], results["lm-eval"]
    agree = sum(a == b for a, b in zip(ours.predictions, theirs.predictions, strict=True))
    contexts, continuations = task_inputs(task.records, task.description, task.scoring)
    stats, layout = (
        layout_stats(model, tokenizer, contexts, continuations, batch_size=batch_size, share=share)
        for share in (True, False)
    )
    print(f"{task.name} ({task.scoring}): {n} questions, batch size {batch_size}")
    for k in ("native", "lm-eval"):
        print(f"  {k:8s} {n / median[k]:6.2f} questions/s  ({median[k]:.1f} s, median of {rounds})")
    print(f"  speed-up native/lm-eval: {median['lm-eval'] / median['native']:.2f}x")
    print(f"  predictions agree: {agree}/{n} ({'all' if agree == n else 'NOT all'})")
    print(
        f"  native computed {stats.tokens:,} tokens in {stats.forwards} forwards, "
        f"{stats.padding_share:.1%} of them padding, + a shared prefix of {stats.prefix} "
        f"tokens run once; one sequence per {'choice' if task.scoring == 'cloze' else 'question'}"
        f" (lm-eval's layout): {layout.tokens:,} tokens, {layout.padding_share:.1%} padding"
    )
    return median["lm-eval"] / median["native"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=200, help="letter questions")
    parser.add_argument("--cloze-n", type=int, default=100, help="cloze questions (0: skip)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model, tokenizer = load_model(args.model)
    print(
        f"model {args.model} ({next(model.parameters()).dtype}, "
        f"{model.config._attn_implementation} attention), {torch.get_num_threads()} threads"
    )
    [letters] = resolve_task("mmlu", limit=args.n, seed=args.seed)
    compare(model, tokenizer, letters, args.batch_size, args.rounds)
    if args.cloze_n:
        [cloze] = resolve_task("mmlu", limit=args.cloze_n, seed=args.seed)
        cloze = replace(cloze, name="mmlu-cloze", scoring="cloze")
        compare(model, tokenizer, cloze, args.batch_size, args.rounds)


if __name__ == "__main__":
    main()
