"""The paper's effect on the fictional world, over several seeds:

    python benchmarks/world_effect.py [--seeds 0,1,2] [--methods rmu,npo_kl,...]

For every recipe pair in recipes/world/ (plain and RNA) and every seed, trains (resuming,
skipping finished runs under runs/world_effect/) and evaluates on world-forget, world-retain,
world-perturbed and world-mention; the learned world model is evaluated once as the base.
Prints mean +- std over seeds of: forget accuracy, retain accuracy, perturbed-retain accuracy
(both forms), the reduction rate vs the base, and the RNA recovery rate vs the plain twin, per
method and averaged over RM and PO methods, a 95 % bootstrap interval (seeds and questions
resampled together) of the recovery of the seed means, then the issue's acceptance checks (on
the means over seeds; recovery there is that of the seed means). Writes
runs/world_effect/summary.json.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from rnacli.evaluate.metrics import recovery_interval, recovery_rate, reduction_rate
from rnacli.evaluate.results import EVAL_FILE, merge_eval, read_eval
from rnacli.evaluate.runner import evaluate_model
from rnacli.evaluate.tasks import resolve_tasks
from rnacli.files.atomic import write_json
from rnacli.recipe import load_recipe
from rnacli.runs.checkpoint import CHECKPOINT, read_meta
from rnacli.training.loop import train

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "world"
METHODS = [
    "rmu",
    "adaptive_rmu",
    "rsv",
    "npo_kl",
    "npo_mse",
    "dpo_kl",
    "dpo_mse",
    "simnpo_kl",
    "simnpo_mse",
]
RM = {"rmu", "adaptive_rmu", "rsv"}
TASKS = ["world-forget", "world-retain", "world-perturbed", "world-mention"]
PERTURBED = ("world-perturbed", "world-mention")


def evaluated(run_dir: Path, tasks) -> dict:
    """Per task of a run (evaluating what is missing): its accuracy and, per question, whether
    the answer was right (for the bootstrap intervals)."""
    done = read_eval(run_dir)[0]["tasks"] if (run_dir / EVAL_FILE).exists() else {}
    if not all(t.name in done for t in tasks):
        done = evaluate_model(str(run_dir), tasks, batch_size=32)["tasks"]
    return {t.name: with_correct(done[t.name]) for t in tasks}


def with_correct(result: dict) -> dict:
    correct = [p == a for p, a in zip(result["predictions"], result["answers"], strict=True)]
    return {"acc": result["acc"], "indices": result["indices"], "correct": correct}


def accuracies(evaluation: dict) -> dict[str, float]:
    return {task: result["acc"] for task, result in evaluation.items()}


def same_questions(base: dict, other: dict, what: str) -> None:
    """The bootstrap pairs models question by question: they must have answered the same ones."""
    for task, result in base.items():
        if result["indices"] != other[task]["indices"]:
            raise SystemExit(
                f"{what}: its {task} questions differ from the base's (evaluated with another "
                "--limit?); delete its eval.json to re-evaluate"
            )


def trained(recipe_path: Path, run_dir: Path, overrides: list[str]) -> Path:
    """`run_dir`, trained from the recipe with `overrides` (resuming; skipped when finished)."""
    recipe = load_recipe(recipe_path, overrides)
    meta = run_dir / CHECKPOINT / "meta.json"
    if not (meta.exists() and read_meta(run_dir)["step"] >= recipe.train.steps):
        train(recipe, run_dir, resume=True)
    return run_dir


def run(recipe_path: Path, seed: int, root: Path, tasks) -> dict:
    run_dir = root / recipe_path.stem / f"seed{seed}"
    return evaluated(trained(recipe_path, run_dir, [f"train.seed={seed}"]), tasks)


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v == v]  # drop undefined (nan) rates
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):5.1f} ± {100 * std:4.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--root", type=Path, default=Path("runs/world_effect"))
    parser.add_argument("--limit", type=int, default=150, help="questions per retain-side task")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    tasks = resolve_tasks(["world-forget"]) + resolve_tasks(TASKS[1:], limit=args.limit)
    base_dir = args.root / "base"
    if not (base_dir / EVAL_FILE).exists():
        merge_eval(base_dir, [evaluate_model("world", tasks, batch_size=32)])
    base_full = evaluated(base_dir, tasks)
    base = accuracies(base_full)

    results: dict = {"base": base, "methods": {}, "intervals": {}}
    for method in methods:
        per_seed, correct = [], {"plain": [], "rna": []}
        for seed in seeds:
            row = {"seed": seed}
            for variant, stem in (("plain", method), ("rna", f"{method}_rna")):
                full = run(RECIPES / f"{stem}.toml", seed, args.root, tasks)
                same_questions(base_full, full, f"{stem} seed {seed}")
                row[variant] = accuracies(full)
                correct[variant].append(full)
            for task in PERTURBED:
                row[f"reduction {task}"] = reduction_rate(base[task], row["plain"][task])
                row[f"recovery {task}"] = recovery_rate(
                    base[task], row["plain"][task], row["rna"][task]
                )
            per_seed.append(row)
        results["methods"][method] = per_seed
        results["intervals"][method] = {}
        for task in PERTURBED:
            low, high, undefined = recovery_interval(
                base_full[task]["correct"],
                [c[task]["correct"] for c in correct["plain"]],
                [c[task]["correct"] for c in correct["rna"]],
            )
            results["intervals"][method][task] = {"low": low, "high": high, "undefined": undefined}
        write_json(args.root / "summary.json", results)

    print(
        f"base (learned world): forget {100 * base['world-forget']:.1f}, retain "
        f"{100 * base['world-retain']:.1f}, perturbed {100 * base['world-perturbed']:.1f}, "
        f"mention {100 * base['world-mention']:.1f}   ({len(seeds)} seeds: mean ± std, %)"
    )
    header = (
        "method",
        "forget",
        "retain",
        "perturbed",
        "mention",
        "red. pert.",
        "red. ment.",
        "rec. pert.",
        "rec. ment.",
    )
    print(" | ".join(f"{h:>14}" for h in header))
    groups: dict[str, dict[str, list[float]]] = {"RM": {}, "PO": {}}
    for method, rows in results["methods"].items():
        for variant in ("plain", "rna"):
            cells = [f"{method}{' + RNA' if variant == 'rna' else ''}"]
            cells += [mean_std([r[variant][t] for r in rows]) for t in TASKS]
            if variant == "plain":
                cells += [mean_std([r[f"reduction {t}"] for r in rows]) for t in PERTURBED]
                cells += ["", ""]
            else:
                cells += ["", ""]
                cells += [mean_std([r[f"recovery {t}"] for r in rows]) for t in PERTURBED]
            print(" | ".join(f"{c:>14}" for c in cells))
        group = groups["RM" if method in RM else "PO"]
        for t in PERTURBED:
            group.setdefault(f"reduction {t}", []).extend(r[f"reduction {t}"] for r in rows)
            group.setdefault(f"recovery {t}", []).extend(r[f"recovery {t}"] for r in rows)
    for name, group in groups.items():
        if group:
            print(f"{name} average: " + ", ".join(f"{k} {mean_std(v)}" for k, v in group.items()))
    print("RNA recovery of the seed means, 95 % bootstrap interval over seeds and questions:")
    for method, by_task in results["intervals"].items():
        print(f"  {method:>14}: " + ", ".join(interval(t, i) for t, i in by_task.items()))
    for line in checks(results):
        print(line)
    print(f"wrote {args.root / 'summary.json'}")


def interval(task: str, found: dict) -> str:
    if found["low"] != found["low"]:  # nan: no draw had a drop to recover
        return f"{task} n/a (no drop)"
    text = f"{task} [{100 * found['low']:.0f} %, {100 * found['high']:.0f} %]"
    if found["undefined"]:
        text += f" ({100 * found['undefined']:.0f} % of draws without a drop)"
    return text


def checks(results: dict) -> list[str]:
    """The issue's acceptance criteria, each marked ok or MISSED, on the means over seeds."""
    base = results["base"]
    lines = [
        _check(
            "learned base >= 90 % on retain and forget",
            min(base["world-retain"], base["world-forget"]) >= 0.90,
        ),
    ]
    for method, rows in results["methods"].items():
        forget = statistics.mean(r["plain"]["world-forget"] for r in rows)
        forget_rna = statistics.mean(r["rna"]["world-forget"] for r in rows)
        lines.append(
            _check(
                f"{method}: forget <= 35 % (plain {100 * forget:.1f}, RNA {100 * forget_rna:.1f})",
                max(forget, forget_rna) <= 0.35,
            )
        )
        if method in RM:
            for task in PERTURBED:
                plain = statistics.mean(r["plain"][task] for r in rows)
                rna = statistics.mean(r["rna"][task] for r in rows)
                drop = base[task] - plain
                # recovery of the means: per-seed rates divide by small, noisy drops
                rec = recovery_rate(base[task], plain, rna)
                lines.append(
                    _check(
                        f"{method} {task}: drop >= 5 points ({100 * drop:.1f}), RNA recovery of "
                        f"the means >= 30 % ({100 * rec:.1f} %), forget within 5 points of plain "
                        f"({100 * (forget_rna - forget):+.1f})",
                        drop >= 0.05 and rec >= 0.30 and abs(forget_rna - forget) <= 0.05,
                    )
                )
    return lines


def _check(what: str, ok: bool) -> str:
    return f"{'ok    ' if ok else 'MISSED'} {what}"


if __name__ == "__main__":
    main()
