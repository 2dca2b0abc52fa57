"""The paper's effect on the fictional world, over several seeds:

    python benchmarks/world_effect.py [--seeds 0,1,2] [--methods rmu,npo_kl,...] [--jobs 2]

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

import statistics
from pathlib import Path

from _world import (
    PERTURBED,
    RECIPES,
    TASKS,
    Run,
    accuracies,
    base_evaluated,
    check_recipes,
    evaluated,
    run_grid_jobs,
    trained,
    world_parser,
    world_tasks,
)

from rnacli.evaluate.metrics import recovery_interval, recovery_rate, reduction_rate
from rnacli.files.atomic import write_json

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
HEADER = (
    "method",
    *(t.removeprefix("world-") for t in TASKS),
    "red. pert.",
    "red. ment.",
    "rec. pert.",
    "rec. ment.",
)


def same_questions(base: dict, other: dict, what: str) -> None:
    """The bootstrap pairs models question by question: they must have answered the same ones."""
    for task, result in base.items():
        if result["indices"] != other[task]["indices"]:
            raise SystemExit(
                f"{what}: its {task} questions differ from the base's (evaluated with another "
                "--limit?); delete its eval.json to re-evaluate"
            )


def run(recipe_path: Path, seed: int, root: Path, tasks) -> dict:
    run_dir = root / recipe_path.stem / f"seed{seed}"
    return evaluated(trained(recipe_path, run_dir, [f"train.seed={seed}"]), tasks)


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v == v]  # drop undefined (nan) rates
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):5.1f} ± {100 * std:4.1f}"


def method_results(method: str, seeds: list[int], root: Path, tasks, base_full: dict):
    """(a row per seed: both variants' accuracies, reduction and recovery rates; the 95 %
    bootstrap interval of the recovery of the seed means, per perturbed task)."""
    base = accuracies(base_full)
    per_seed, correct = [], {"plain": [], "rna": []}
    for seed in seeds:
        row = {"seed": seed}
        for variant, stem in (("plain", method), ("rna", f"{method}_rna")):
            full = run(RECIPES / f"{stem}.toml", seed, root, tasks)
            same_questions(base_full, full, f"{stem} seed {seed}")
            row[variant] = accuracies(full)
            correct[variant].append(full)
        for task in PERTURBED:
            row[f"reduction {task}"] = reduction_rate(base[task], row["plain"][task])
            row[f"recovery {task}"] = recovery_rate(
                base[task], row["plain"][task], row["rna"][task]
            )
        per_seed.append(row)
    intervals = {}
    for task in PERTURBED:
        low, high, undefined = recovery_interval(
            base_full[task]["correct"],
            [c[task]["correct"] for c in correct["plain"]],
            [c[task]["correct"] for c in correct["rna"]],
        )
        intervals[task] = {"low": low, "high": high, "undefined": undefined}
    return per_seed, intervals


def main() -> None:
    parser = world_parser(
        __doc__, methods=",".join(METHODS), seeds="0,1,2", root="runs/world_effect", limit=150
    )
    args = parser.parse_args()
    check_recipes(parser, args.methods)
    tasks = world_tasks(args.limit)
    base_full = base_evaluated(args.root, tasks)
    if args.jobs > 1:  # every run first, N at once; the tables below then reuse them
        runs = [
            Run(
                f"{stem} seed {seed}",
                RECIPES / f"{stem}.toml",
                args.root / stem / f"seed{seed}",
                [f"train.seed={seed}"],
            )
            for method in args.methods
            for stem in (method, f"{method}_rna")
            for seed in args.seeds
        ]
        run_grid_jobs(runs, tasks, args.jobs, lambda run, how: print(f"{run.label}: {how}"))
    results: dict = {"base": accuracies(base_full), "methods": {}, "intervals": {}}
    for method in args.methods:
        rows, intervals = method_results(method, args.seeds, args.root, tasks, base_full)
        results["methods"][method], results["intervals"][method] = rows, intervals
        write_json(args.root / "summary.json", results)
    report(results, len(args.seeds))
    print(f"wrote {args.root / 'summary.json'}")


def method_lines(method: str, rows: list[dict]) -> list[str]:
    """The table's two lines of a method: plain with its reduction, RNA with its recovery."""
    lines = []
    for variant, rate, label in (
        ("plain", "reduction", method),
        ("rna", "recovery", f"{method} + RNA"),
    ):
        cells = [label, *(mean_std([r[variant][t] for r in rows]) for t in TASKS)]
        rates = [mean_std([r[f"{rate} {t}"] for r in rows]) for t in PERTURBED]
        cells += [*rates, "", ""] if variant == "plain" else ["", "", *rates]
        lines.append(" | ".join(f"{c:>14}" for c in cells))
    return lines


def report(results: dict, n_seeds: int) -> None:
    """The table (mean ± std over seeds), the RM and PO averages, the intervals, the checks."""
    base = results["base"]
    line = ", ".join(f"{t.removeprefix('world-')} {100 * base[t]:.1f}" for t in TASKS)
    print(f"base (learned world): {line}   ({n_seeds} seeds: mean ± std, %)")
    print(" | ".join(f"{h:>14}" for h in HEADER))
    groups: dict[str, dict[str, list[float]]] = {"RM": {}, "PO": {}}
    for method, rows in results["methods"].items():
        print("\n".join(method_lines(method, rows)))
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
