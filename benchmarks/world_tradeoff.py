"""Does RNA buy robustness beyond what weaker unlearning buys? On the fictional world:

    python benchmarks/world_tradeoff.py [--method rmu] [--steps 75,100,150] [--nu 16,64]

RNA's noise can make unlearning weaker (AdamW turns the extra gradient variance into smaller
steps), and weaker unlearning is less fragile by itself. So compare RNA with the plain method at
the *same forgetting*: train the plain recipe for several step counts (its trade-off curve) and
the RNA recipe at several noise scales, over seeds; evaluate forget (all), retain (100) and the
two perturbed sets (`--limit` questions each); print mean +- std per point and, for each RNA
point, the plain curve's accuracy at the same forget accuracy (linear interpolation of the seed
means): a positive gain is robustness that weaker forgetting does not explain. Plots both
perturbed forms against forget accuracy to runs/world_tradeoff/<method>/tradeoff.png.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from world_effect import PERTURBED, RECIPES, TASKS, accuracies, evaluated, trained

from rnacli.atomic import write_json
from rnacli.evaluate.results import EVAL_FILE, merge_eval
from rnacli.evaluate.runner import evaluate_model
from rnacli.evaluate.tasks import resolve_tasks


def points(method: str, steps: list[int], nus: list[float], seeds: list[int], root: Path, tasks):
    """{label: [accuracies per seed]} for the plain recipe at each step count, then RNA at each
    noise scale (at the RNA recipe's own steps)."""
    variants = [(f"steps {s}", f"{method}.toml", [f"train.steps={s}"]) for s in steps]
    variants += [(f"nu {n:g}", f"{method}_rna.toml", [f"rna.noise_scale={n}"]) for n in nus]
    found = {}
    for label, recipe, overrides in variants:
        found[label] = [
            accuracies(
                evaluated(
                    trained(
                        RECIPES / recipe,
                        root / label.replace(" ", "") / f"seed{seed}",
                        [f"train.seed={seed}", *overrides],
                    ),
                    tasks,
                )
            )
            for seed in seeds
        ]
    return found


def means(rows: list[dict]) -> dict[str, float]:
    return {t: statistics.mean(r[t] for r in rows) for t in rows[0]}


def matched_gain(plain: dict[str, dict], point: dict, task: str) -> float:
    """`point`'s accuracy on `task` minus the plain curve's at the same forget accuracy (nan
    outside the curve's range: no plain run forgot that little or that much)."""
    xs = np.array([m["world-forget"] for m in plain.values()])
    ys = np.array([m[task] for m in plain.values()])
    order = np.argsort(xs)
    x = point["world-forget"]
    if not xs.min() <= x <= xs.max():
        return float("nan")
    return point[task] - float(np.interp(x, xs[order], ys[order]))


def plot(found: dict, base: dict, method: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PERTURBED), figsize=(10, 4.2), sharey=True)
    for ax, task in zip(axes, PERTURBED, strict=True):
        for kind, color in (("steps", "tab:red"), ("nu", "tab:blue")):
            labels = [k for k in found if k.startswith(kind)]
            xs = [100 * means(found[k])["world-forget"] for k in labels]
            ys = [100 * means(found[k])[task] for k in labels]
            errs = [
                100 * statistics.stdev(r[task] for r in found[k]) if len(found[k]) > 1 else 0
                for k in labels
            ]
            name = f"{method}, plain (by steps)" if kind == "steps" else f"{method} + RNA (by nu)"
            ax.errorbar(xs, ys, yerr=errs, color=color, marker="o", capsize=3, label=name)
            for x, y, k in zip(xs, ys, labels, strict=True):
                ax.annotate(k, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.scatter(
            [100 * base["world-forget"]],
            [100 * base[task]],
            marker="*",
            s=120,
            color="black",
            label="learned base",
        )
        ax.set_title(task)
        ax.set_xlabel("forget accuracy (%)  <- forgets more")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy on the perturbed retain questions (%)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{method} on the fictional world: robustness vs forgetting (mean ± std, seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="rmu")
    parser.add_argument("--steps", default="75,100,150", help="plain recipe's step counts")
    parser.add_argument("--nu", default="16,64", help="RNA noise scales")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--limit", type=int, default=300, help="questions per perturbed set")
    parser.add_argument("--root", type=Path, default=Path("runs/world_tradeoff"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    root = args.root / args.method

    tasks = (
        resolve_tasks(["world-forget"])
        + resolve_tasks(["world-retain"], limit=100)
        + resolve_tasks(list(PERTURBED), limit=args.limit)
    )
    base_dir = args.root / "base"
    if not (base_dir / EVAL_FILE).exists():
        merge_eval(base_dir, [evaluate_model("world", tasks, batch_size=32)])
    base = accuracies(evaluated(base_dir, tasks))
    found = points(
        args.method,
        [int(s) for s in args.steps.split(",")],
        [float(n) for n in args.nu.split(",")],
        seeds,
        root,
        tasks,
    )
    plain = {k: means(v) for k, v in found.items() if k.startswith("steps")}
    print(
        f"{args.method}, {len(seeds)} seeds, mean ± std (%); base: "
        + ", ".join(f"{t} {100 * base[t]:.1f}" for t in TASKS)
    )
    header = ["point", *TASKS] + [f"gain {t} at same forget" for t in PERTURBED]
    print(" | ".join(header))
    summary = {"base": base, "points": found, "gains": {}}
    for label, rows in found.items():
        cells = [label]
        for t in TASKS:
            values = [100 * r[t] for r in rows]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {std:.1f}")
        if label.startswith("nu"):
            gains = {t: matched_gain(plain, means(rows), t) for t in PERTURBED}
            summary["gains"][label] = gains
            cells += [f"{100 * g:+.1f}" if g == g else "off the curve" for g in gains.values()]
        print(" | ".join(cells))
    write_json(root / "summary.json", summary)
    plot(found, base, args.method, root / "tradeoff.png")
    print(f"wrote {root / 'summary.json'} and {root / 'tradeoff.png'}")


if __name__ == "__main__":
    main()
