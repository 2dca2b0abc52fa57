"""The paper's effect on the fictional world, over several seeds:

    python benchmarks/world_effect.py [--seeds 0,1,2] [--methods rmu,npo_kl,...]

For every recipe pair in recipes/world/ (plain and RNA) and every seed, trains (resuming,
skipping finished runs under runs/world_effect/) and evaluates on world-forget, world-retain,
world-perturbed and world-mention; the learned world model is evaluated once as the base.
Prints mean +- std over seeds of: forget accuracy, retain accuracy, perturbed-retain accuracy
(both forms), the reduction rate vs the base, and the RNA recovery rate vs the plain twin, per
method and averaged over RM and PO methods, then the issue's acceptance checks (on the
means over seeds; recovery there is that of the seed means). Writes
runs/world_effect/summary.json.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from rnacli.atomic import write_json
from rnacli.checkpoint import CHECKPOINT, read_meta
from rnacli.evaluate.metrics import recovery_rate, reduction_rate
from rnacli.evaluate.results import EVAL_FILE, merge_eval, read_eval
from rnacli.evaluate.runner import evaluate_model
from rnacli.evaluate.tasks import resolve_tasks
from rnacli.recipe import load_recipe
from rnacli.train import train

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
    """Accuracy per task of a run (evaluating what is missing)."""
    if (run_dir / EVAL_FILE).exists():
        done = read_eval(run_dir)[0]["tasks"]
        if all(t.name in done for t in tasks):
            return {t.name: done[t.name]["acc"] for t in tasks}
    entry = evaluate_model(str(run_dir), tasks, batch_size=32)
    return {t.name: entry["tasks"][t.name]["acc"] for t in tasks}


def run(recipe_path: Path, seed: int, root: Path, tasks) -> dict:
    recipe = load_recipe(recipe_path, [f"train.seed={seed}"])
    run_dir = root / recipe_path.stem / f"seed{seed}"
    done = (run_dir / CHECKPOINT / "meta.json").exists() and read_meta(run_dir)[
        "step"
    ] >= recipe.train.steps
    if not done:
        train(recipe, run_dir, resume=True)
    return evaluated(run_dir, tasks)


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
    if (base_dir / EVAL_FILE).exists():
        base = {t: r["acc"] for t, r in read_eval(base_dir)[0]["tasks"].items()}
    else:
        entry = evaluate_model("world", tasks, batch_size=32)
        merge_eval(base_dir, [entry])
        base = {t: r["acc"] for t, r in entry["tasks"].items()}

    results: dict = {"base": base, "methods": {}}
    for method in methods:
        per_seed = []
        for seed in seeds:
            plain = run(RECIPES / f"{method}.toml", seed, args.root, tasks)
            rna = run(RECIPES / f"{method}_rna.toml", seed, args.root, tasks)
            row = {"seed": seed, "plain": plain, "rna": rna}
            for task in PERTURBED:
                row[f"reduction {task}"] = reduction_rate(base[task], plain[task])
                row[f"recovery {task}"] = recovery_rate(base[task], plain[task], rna[task])
            per_seed.append(row)
        results["methods"][method] = per_seed
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
    for line in checks(results):
        print(line)
    print(f"wrote {args.root / 'summary.json'}")


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
