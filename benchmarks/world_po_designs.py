"""Do PO methods become fragile on the fictional world under some design? (issue 12, part 3)

    python benchmarks/world_po_designs.py [--methods npo_kl,simnpo_kl,dpo_kl] \\
        [--designs recipe,passages,longer] [--seeds 0,1,2]

Issue 12 calls a PO method fragile when its accuracy on perturbed or mention questions (benign
retain questions that contain a forget person's name) falls >= 5 points below its accuracy on
the same questions without the name: for perturbed, the options-listed control
(world-retain-listed: the prompt lists the four original choices, so the two differ by the
name alone); for mention, plain retain. The learned base itself loses some points there, so
the table prints each gap and, in brackets, the gap minus the base's, the part that unlearning
added, and calls a method fragile when that part is >= 5.

Designs (each a set of overrides of the world recipe, declared in DESIGNS):
- recipe: the recipe as it is: (prompt, completion) forget documents, the value scored;
- passages: one passage per forget person stating all of their facts, every token scored
  (`world:forget-passages`; WMDP's forget corpora are whole documents), 25 steps (a passage
  step costs ~5x a QA step: the 49k-word head runs at every token);
- longer: twice the recipe's steps (the recipes already forget to chance or below);
- authors: the authors' code's forms (pooled NLL, pads counted, their DPO = NPO; issue 20);
- rna / authors_rna: RNA as the *_rna recipe places it, in the equations' or the authors'
  forms (nu given as the std of the same noise).
Letter scoring, the issue's design (a), is not run: SmolLM2-135M answers the world's letter
questions at chance even when it knows the facts (rnacli/world/learn.py), so there is no
retain accuracy to lose.

Runs go to runs/world_po/<method>/<design>/seed<N> and are reused when finished; `--jobs N`
trains N at once in worker processes (benchmarks/world_tradeoff.py says how). Prints one
table (mean ± std over seeds) and writes runs/world_po/summary.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _world import (
    CONTROL_OF,
    PERTURBED,
    RECIPES,
    TASKS,
    Run,
    accuracies,
    base_evaluated,
    check_recipes,
    evaluated,
    grid_line,
    run_grid_jobs,
    scores,
    split,
    world_parser,
    world_tasks,
)
from rich.table import Table

from rnacli.console import console, stdout
from rnacli.files.atomic import write_json
from rnacli.recipe import load_recipe

DESIGNS = {
    "recipe": lambda recipe: [],
    "passages": lambda recipe: [
        'data.forget=["world:forget-passages"]',
        "data.forget_max_length=256",
        "train.steps=25",
    ],
    "longer": lambda recipe: [f"train.steps={2 * recipe.train.steps}"],
    # the authors' code's forms (docs/authors-code.md), the rest of the recipe kept
    "authors": lambda recipe: authors_forms(recipe),
    # RNA as the method's *_rna recipe places it (reference side), in the equations' forms
    "rna": lambda recipe: rna_of(recipe),
    # the same noise read as the authors read nu: a std (the variance's square root)
    "authors_rna": lambda recipe: [*authors_forms(recipe), *rna_of(recipe, as_std=True)],
}


def authors_forms(recipe) -> list[str]:
    forms = ['method.nll="pooled-mean"', 'method.mean_over="all-positions"']
    if recipe.method.name == "dpo":
        forms.append('method.dpo_reference="authors"')
    return forms


def rna_of(recipe, as_std: bool = False) -> list[str]:
    """--set items that turn on the RNA of the recipe's *_rna twin; `as_std`: the same
    variance given as a standard deviation (rna.nu_is = "std")."""
    twin = load_recipe(RECIPES / f"{recipe.name}_rna.toml").rna
    nu = twin.noise_scale**0.5 if as_std else twin.noise_scale
    items = ["rna.enabled=true", f"rna.noise_scale={nu}", f"rna.layers={twin.layers}"]
    items += [f'rna.side="{twin.side}"', f'rna.scale="{twin.scale}"']
    return items + (['rna.nu_is="std"'] if as_std else [])


FRAGILE = 0.05  # the threshold: 5 points below the question without the name
COLUMNS = (
    "method",
    "design",
    "seeds",
    *(t.removeprefix("world-") for t in TASKS),
    "retain-listed - perturbed (beyond base's)",
    "retain - mention (beyond base's)",
    "fragile",
)


def fmt(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def run_grid(args: argparse.Namespace, tasks: list) -> dict[tuple[str, str], list[dict]]:
    """Every (method, design, seed) trained and evaluated, `args.jobs` at a time: accuracies
    per (method, design), in seed order."""
    plan = [(m, d, s) for m in args.methods for d in args.designs for s in args.seeds]
    runs = [
        Run(
            f"{method} {design} seed {seed}",
            RECIPES / f"{method}.toml",
            args.root / method / design / f"seed{seed}",
            [f"train.seed={seed}", *DESIGNS[design](load_recipe(RECIPES / f"{method}.toml"))],
        )
        for method, design, seed in plan
    ]
    start, count = time.monotonic(), iter(range(1, len(runs) + 1))

    def line(run: Run, how: str) -> None:
        acc = accuracies(evaluated(run.run_dir, tasks))
        console.print(
            f"{grid_line(next(count), len(runs), start)} {run.label}: {how}; {scores(acc)}",
            markup=False,
        )

    run_grid_jobs(runs, tasks, args.jobs, line)
    rows: dict[tuple[str, str], list[dict]] = {}
    for (method, design, _), run in zip(plan, runs, strict=True):
        rows.setdefault((method, design), []).append(accuracies(evaluated(run.run_dir, tasks)))
    return rows


def table_and_summary(rows: dict, base: dict[str, float]) -> tuple[Table, dict]:
    """The printed table and summary.json: each perturbed form's gap to its control (the
    options-listed retain questions for perturbed, plain retain for mention), and that gap
    beyond the base's own, which decides `fragile`."""
    table = Table(title="PO methods on the world: accuracy (%), mean ± std over seeds")
    for h in COLUMNS:
        table.add_column(h, justify="right")
    base_gap = {t: base[CONTROL_OF[t]] - base[t] for t in PERTURBED}
    summary: dict = {"base": base, "rows": {}}
    for (method, design), accs in rows.items():
        gaps = {t: [a[CONTROL_OF[t]] - a[t] for a in accs] for t in PERTURBED}
        beyond = {t: statistics.mean(g) - base_gap[t] for t, g in gaps.items()}
        fragile = any(b >= FRAGILE for b in beyond.values())
        table.add_row(
            method,
            design,
            str(len(accs)),
            *(fmt([a[t] for a in accs]) for t in TASKS),
            *(f"{fmt(g)} ({100 * beyond[t]:+.1f})" for t, g in gaps.items()),
            "yes" if fragile else "no",
        )
        summary["rows"][f"{method}/{design}"] = {"runs": accs, "fragile": fragile}
    return table, summary


def main() -> None:
    parser = world_parser(
        __doc__, methods="npo_kl,simnpo_kl,dpo_kl", seeds="0,1,2", root="runs/world_po", limit=300
    )
    parser.add_argument("--designs", type=split, default=",".join(DESIGNS))
    args = parser.parse_args()
    check_recipes(parser, args.methods, variants=("",))
    for design in args.designs:
        if design not in DESIGNS:
            parser.error(f"--designs: '{design}' is not one of {', '.join(DESIGNS)}")
    tasks = world_tasks(args.limit)
    base = accuracies(base_evaluated(args.root, tasks))
    table, summary = table_and_summary(run_grid(args, tasks), base)
    stdout.print(table)
    stdout.print(
        f"base: {', '.join(f'{t} {100 * a:.1f}' for t, a in base.items())}"
        f"; fragile: a gap beyond the base's of >= {100 * FRAGILE:.0f} points"
    )
    write_json(args.root / "summary.json", summary)
    stdout.print(f"wrote {args.root / 'summary.json'}", markup=False)


if __name__ == "__main__":
    main()
