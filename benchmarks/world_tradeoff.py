"""Does RNA buy robustness beyond what weaker unlearning buys? On the fictional world, at matched
forgetting:

    python benchmarks/world_tradeoff.py --methods rmu,adaptive_rmu,rsv --seeds 0,1,2,3,4 \\
        --steps 50,75,150 --variants reference@8:r1,model@7:r0.3

RNA's noise can make unlearning weaker (AdamW turns extra gradient variance into smaller steps),
and weaker unlearning is less fragile by itself. So each RNA point is compared with the plain
method at *matched forgetting*: the plain recipe trained for several step counts gives the
forgetting curve, and an RNA point's gain is its accuracy on a retain-side task minus the best
plain point's that forgets at least as much (rnacli.evaluate.metrics.matched_gain: RMU's forget
accuracy reaches chance early and stays there while its robustness keeps falling, so stopping
early is the baseline to beat), with a 95 % bootstrap interval that resamples seeds and
questions together. Also printed: the paper's recovery rate (eq. 15) against
the plain run of the same step count, which mixes robustness with weaker forgetting.

A variant is SIDE@LAYER:SCALE: `rna.side` (reference = Algorithm 1, model = Assumption 5.1),
`rna.layers`, and `rna.noise_scale` (`r0.3`: relative, 0.3 x the layer's median per-token mean
of z^2; `16`: absolute variance). The world recipes train down_proj of layers 6-8 (unlearn
layer 8), so model@5 puts the noise below the trained layers.

`--world seed=1` runs the grid on another world build (`rnacli world build --seed 1` first): the
learned base, and with it every number, depends on the world drawn; its runs go under
runs/world_tradeoff/world[seed=1]/.

Every (method, point, seed) is one run under runs/world_tradeoff/<method>/; finished runs and
evaluations are reused, so an interrupted grid resumes and a larger grid extends a smaller one.
`--jobs N` trains N runs at once in worker processes (one torch thread each at N = 2 on 2
cores: benchmarks/jobs.py measures the gain); a failed run is named and the others finish.
A line per run tracks the grid (done, elapsed, eta). Writes summary.json and tradeoff.png (mean
± std over seeds per point, both retain-side perturbations against forget accuracy) per method.
Letter questions are not scored: SmolLM2-135M answers them at chance even about the world it
learned (rnacli/world/learn.py), so only the cloze sets carry signal.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from _world import (
    FORGET,
    PERTURBED,
    RECIPES,
    RETAIN,
    TASKS,
    Run,
    accuracies,
    base_evaluated,
    check_recipes,
    evaluated,
    grid_line,
    int_list,
    run_grid_jobs,
    scores,
    split,
    world_parser,
    world_tasks,
)

from rnacli.console import console, stdout
from rnacli.evaluate.metrics import matched_gain, matched_gain_interval, recovery_rate
from rnacli.files.atomic import write_json
from rnacli.recipe import load_recipe


class Point(NamedTuple):
    label: str  # "steps 100" or "model@5:r0.3"
    recipe: str  # file name in recipes/world/
    overrides: tuple[str, ...]


def parse_variant(text: str) -> Point:
    """'model@5:r0.3' -> the RNA recipe with rna.side, rna.layers, rna.noise_scale, rna.scale."""
    try:
        side, rest = text.split("@")
        layer, scale = rest.split(":")
        relative = scale.startswith("r")
        nu = float(scale[1:] if relative else scale)
        int(layer)
    except ValueError:
        raise ValueError(
            f"--variants: '{text}' is not SIDE@LAYER:SCALE (e.g. model@5:r0.3 or reference@8:16)"
        ) from None
    if side not in ("reference", "model"):
        raise ValueError(f"--variants: '{text}': the side is 'reference' or 'model'")
    return Point(
        text,
        "",
        (
            f"rna.side={side}",
            f"rna.layers={layer}",
            f"rna.noise_scale={nu}",
            f"rna.scale={'relative' if relative else 'absolute'}",
        ),
    )


def grid(method: str, steps: list[int], variants: list[str]) -> list[Point]:
    points = [Point(f"steps {s}", f"{method}.toml", (f"train.steps={s}",)) for s in steps]
    for text in variants:
        point = parse_variant(text)
        points.append(point._replace(recipe=f"{method}_rna.toml"))
    return points


def folder(point: Point) -> str:
    return point.label.replace(" ", "").replace("@", "_l").replace(":", "_")


def correct_matrix(runs: list[dict], task: str) -> np.ndarray:
    """[seeds, questions] of bools for one point and task (questions in the same order)."""
    first = runs[0][task]["indices"]
    for run in runs:
        if run[task]["indices"] != first:
            raise SystemExit(f"{task}: runs answered different questions (another --limit?)")
    return np.array([run[task]["correct"] for run in runs], dtype=bool)


def summarize(method: str, points: list[Point], found: dict, base: dict, steps_of_rna: int):
    """Print the table for one method; return the summary dict."""
    acc = {p.label: {t: correct_matrix(found[p.label], t) for t in TASKS} for p in points}
    plain = [p.label for p in points if p.label.startswith("steps")]
    twin = f"steps {steps_of_rna}"
    rows, summary = [], {"base": base, "points": {}}
    for p in points:
        m = acc[p.label]
        entry = {
            t: {
                "mean": float(m[t].mean()),
                "std_over_seeds": float(m[t].mean(axis=1).std(ddof=1)) if len(m[t]) > 1 else 0.0,
            }
            for t in TASKS
        }
        cells = [p.label] + [
            f"{100 * entry[t]['mean']:.1f} ± {100 * entry[t]['std_over_seeds']:.1f}" for t in TASKS
        ]
        if p.label not in plain:
            for t in PERTURBED:
                gain = matched_gain(
                    [acc[q][FORGET].mean() for q in plain],
                    [acc[q][t].mean() for q in plain],
                    m[FORGET].mean(),
                    m[t].mean(),
                )
                low, high, off = matched_gain_interval(
                    [acc[q][FORGET] for q in plain],
                    [acc[q][t] for q in plain],
                    m[FORGET],
                    m[t],
                )
                entry[t]["matched_gain"] = {"gain": gain, "low": low, "high": high, "off": off}
                cells.append(
                    "off the curve"
                    if gain != gain
                    else f"{100 * gain:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
                )
            for t in PERTURBED:
                recovery = (
                    recovery_rate(base[t], acc[twin][t].mean(), m[t].mean())
                    if twin in acc
                    else float("nan")
                )
                entry[t]["recovery_vs_same_steps"] = recovery
                cells.append("n/a" if recovery != recovery else f"{100 * recovery:+.0f} %")
            retain_gain = m[RETAIN].mean() - acc[twin][RETAIN].mean() if twin in acc else np.nan
            cells.append("n/a" if retain_gain != retain_gain else f"{100 * retain_gain:+.1f}")
        summary["points"][p.label] = entry
        rows.append(cells)
    header = [
        "point",
        *(t.removeprefix("world-") for t in TASKS),
        *(f"{t.removeprefix('world-')} gain at matched forget [95% CI]" for t in PERTURBED),
        *(f"{t.removeprefix('world-')} recovery vs {twin}" for t in PERTURBED),
        f"retain vs {twin}",
    ]
    from rich.table import Table

    table = Table(title=f"{method}: accuracy (%) mean ± std over seeds; gains in points")
    for h in header:
        table.add_column(h, justify="right")
    for cells in rows:
        table.add_row(*cells, *[""] * (len(header) - len(cells)))
    stdout.print(table)
    return summary


def plot(method: str, summary: dict, base: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = summary["points"]
    fig, axes = plt.subplots(1, len(PERTURBED), figsize=(11, 4.4), sharey=True)
    for ax, task in zip(axes, PERTURBED, strict=True):
        plain = sorted(
            (k for k in points if k.startswith("steps")), key=lambda k: points[k][FORGET]["mean"]
        )
        xs = [100 * points[k][FORGET]["mean"] for k in plain]
        ys = [100 * points[k][task]["mean"] for k in plain]
        es = [100 * points[k][task]["std_over_seeds"] for k in plain]
        ax.errorbar(xs, ys, yerr=es, color="tab:red", marker="o", capsize=3, label="plain")
        for x, y, k in zip(xs, ys, plain, strict=True):
            ax.annotate(k, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        for k, color in zip(
            (k for k in points if not k.startswith("steps")),
            plt.cm.tab10(np.linspace(0, 1, 10))[[0, 2, 4, 6, 8, 9, 1, 3]],
            strict=False,
        ):
            ax.errorbar(
                [100 * points[k][FORGET]["mean"]],
                [100 * points[k][task]["mean"]],
                yerr=[100 * points[k][task]["std_over_seeds"]],
                color=color,
                marker="s",
                capsize=3,
                linestyle="none",
                label=f"RNA {k}",
            )
        # the base forgets nothing (forget 100 %): a line keeps the runs' range readable
        ax.axhline(100 * base[task], color="black", linestyle="--", linewidth=1)
        ax.annotate(
            f"learned base ({100 * base[task]:.0f} %)",
            (0.02, 100 * base[task]),
            xycoords=("axes fraction", "data"),
            xytext=(0, -10),
            textcoords="offset points",
            fontsize=7,
        )
        ax.axvline(25, color="grey", linestyle=":", linewidth=1)  # chance: four choices
        ax.set_title(task)
        ax.set_xlabel("forget accuracy (%)  <- forgets more")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[-1].legend(loc="lower right", fontsize=7)
    fig.suptitle(f"{method} on the fictional world: robustness vs forgetting (mean ± std, seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    parser = world_parser(
        __doc__, methods="rmu", seeds="0,1,2,3,4", root="runs/world_tradeoff", limit=300
    )
    parser.add_argument(
        "--steps", type=int_list, default="75,100,150", help="plain recipe's step counts"
    )
    parser.add_argument(
        "--variants",
        type=split,
        default="reference@8:r1,reference@8:r4,model@5:r0.1,model@5:r0.3",
        help="RNA points, SIDE@LAYER:SCALE (rN relative, N absolute)",
    )
    parser.add_argument(
        "--retain-limit",
        type=int,
        default=150,
        help="plain retain questions (the controls follow --limit)",
    )
    parser.add_argument("--world", default="", help="world spec, e.g. seed=1 (default: world)")
    args = parser.parse_args()
    check_recipes(parser, args.methods)
    try:
        for text in args.variants:
            parse_variant(text)
    except ValueError as e:
        parser.error(str(e))
    return args


class World(NamedTuple):
    """The world the grid runs on: its name suffix ('' or '[seed=1]'), its tasks, and the
    recipe overrides that point a default-world recipe at it."""

    suffix: str
    tasks: list
    overrides: tuple[str, ...]

    @classmethod
    def of(cls, spec: str, limit: int, retain_limit: int) -> World:
        suffix = f"[{spec}]" if spec else ""
        name = f"world{suffix}"
        overrides = (
            f"model.name={name}",
            f'data.forget=["{name}:forget-qa"]',
            f"data.retain={name}:retain-facts",
        )
        return cls(suffix, world_tasks(limit, retain_limit, suffix), overrides)

    def scored(self, run_dir: Path) -> dict:
        """evaluated(), keyed by the task names without the world's spec."""
        return self._unsuffixed(evaluated(run_dir, self.tasks))

    def base(self, root: Path) -> dict[str, float]:
        """The learned base's accuracy per task, evaluated once into `root`/base."""
        return accuracies(self._unsuffixed(base_evaluated(root, self.tasks, f"world{self.suffix}")))

    def _unsuffixed(self, found: dict) -> dict:
        return {t.removesuffix(self.suffix): r for t, r in found.items()}


def run_grid(
    args: argparse.Namespace, world: World, root: Path
) -> dict[str, dict[str, list[dict]]]:
    """Every (method, point, seed) trained and evaluated (or reused), `args.jobs` at a time:
    method -> point -> runs (in seed order)."""
    plan = [
        (m, p, s)
        for m in args.methods
        for p in grid(m, args.steps, args.variants)
        for s in args.seeds
    ]
    runs = [
        Run(
            f"{method} {point.label} seed {seed}",
            RECIPES / point.recipe,
            root / method / folder(point) / f"seed{seed}",
            [f"train.seed={seed}", *world.overrides, *point.overrides],
        )
        for method, point, seed in plan
    ]
    start, count = time.monotonic(), iter(range(1, len(runs) + 1))

    def line(run: Run, how: str) -> None:
        console.print(
            f"{grid_line(next(count), len(runs), start)} {run.label}: {how}; "
            f"{scores(accuracies(world.scored(run.run_dir)))}",
            markup=False,
        )

    run_grid_jobs(runs, world.tasks, args.jobs, line)
    found: dict[str, dict[str, list[dict]]] = {m: {} for m in args.methods}
    for (method, point, _), run in zip(plan, runs, strict=True):
        found[method].setdefault(point.label, []).append(world.scored(run.run_dir))
    return found


def main() -> None:
    args = parse_args()
    world = World.of(args.world, args.limit, args.retain_limit)
    root = args.root / f"world{world.suffix}" if args.world else args.root
    base = world.base(root)
    found = run_grid(args, world, root)
    for method in args.methods:
        points = grid(method, args.steps, args.variants)
        rna_steps = load_recipe(RECIPES / f"{method}_rna.toml").train.steps
        summary = summarize(method, points, found[method], base, rna_steps)
        summary["seeds"] = args.seeds
        summary["limit"] = args.limit
        write_json(root / method / "summary.json", summary)
        plot(method, summary, base, root / method / "tradeoff.png")
        stdout.print(f"wrote {root / method / 'summary.json'} and tradeoff.png", markup=False)
    base_line = ", ".join(f"{t} {100 * base[t]:.1f}" for t in TASKS)
    stdout.print(f"base: {base_line}; {len(args.seeds)} seeds", markup=False)


if __name__ == "__main__":
    main()
