"""Do PO methods become fragile on the fictional world under some design? (issue 12, part 3)

    python benchmarks/world_po_designs.py [--methods npo_kl,simnpo_kl,dpo_kl] \\
        [--designs recipe,passages,longer] [--seeds 0,1,2]

Issue 12 calls a PO method fragile when its accuracy on perturbed or mention questions (benign
retain questions that contain a forget person's name) falls >= 5 points below its accuracy on
plain retain questions. The learned base itself sits 6 points below its retain accuracy on the
perturbed set (a name among the options is a harder question), so by that raw gap the base
would count as fragile too; the table prints each gap and, in brackets, the gap minus the
base's, the part that unlearning added, and calls a method fragile when that part is >= 5.

Designs (each a set of overrides of the world recipe, declared in DESIGNS):
- recipe: the recipe as it is: (prompt, completion) forget documents, the value scored;
- passages: one passage per forget person stating all of their facts, every token scored
  (`world:forget-passages`; WMDP's forget corpora are whole documents), 25 steps (a passage
  step costs ~5x a QA step: the 49k-word head runs at every token);
- longer: twice the recipe's steps (the recipes already forget to chance or below).
Letter scoring, the issue's design (a), is not run: SmolLM2-135M answers the world's letter
questions at chance even when it knows the facts (rnacli/world/learn.py), so there is no
retain accuracy to lose.

Runs go to runs/world_po/<method>/<design>/seed<N> and are reused when finished. Prints one
table (mean ± std over seeds) and writes runs/world_po/summary.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from world_effect import RECIPES, TASKS, evaluated, trained

from rnacli.console import console, out
from rnacli.evaluate.results import EVAL_FILE, merge_eval
from rnacli.evaluate.runner import evaluate_model
from rnacli.evaluate.tasks import resolve_tasks
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
}
FRAGILE = 0.05  # the threshold: 5 points below plain retain accuracy


def fmt(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="npo_kl,simnpo_kl,dpo_kl")
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--limit", type=int, default=300, help="questions per retain-side task")
    parser.add_argument("--root", type=Path, default=Path("runs/world_po"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    for design in designs:
        if design not in DESIGNS:
            parser.error(f"--designs: '{design}' is not one of {', '.join(DESIGNS)}")

    tasks = resolve_tasks(["world-forget"]) + resolve_tasks(TASKS[1:], limit=args.limit)
    base_dir = args.root / "base"
    if not (base_dir / EVAL_FILE).exists():
        merge_eval(base_dir, [evaluate_model("world", tasks, batch_size=32)])
    base = {t: r["acc"] for t, r in evaluated(base_dir, tasks).items()}

    plan = [(m, d, s) for m in methods for d in designs for s in seeds]
    rows: dict[tuple[str, str], list[dict]] = {}
    start = time.monotonic()
    for i, (method, design, seed) in enumerate(plan):
        path = RECIPES / f"{method}.toml"
        overrides = [f"train.seed={seed}", *DESIGNS[design](load_recipe(path))]
        run_dir = args.root / method / design / f"seed{seed}"
        acc = {t: r["acc"] for t, r in evaluated(trained(path, run_dir, overrides), tasks).items()}
        rows.setdefault((method, design), []).append(acc)
        elapsed = time.monotonic() - start
        console.print(
            f"grid: {i + 1}/{len(plan)} ({elapsed / 60:.0f} min, eta "
            f"{elapsed / (i + 1) * (len(plan) - i - 1) / 60:.0f} min) {method} {design} seed "
            f"{seed}: "
            + ", ".join(f"{t.removeprefix('world-')} {100 * a:.1f}" for t, a in acc.items())
        )

    from rich.table import Table

    table = Table(title="PO methods on the world: accuracy (%), mean ± std over seeds")
    for h in (
        "method",
        "design",
        "seeds",
        "forget",
        "retain",
        "perturbed",
        "mention",
        "retain - perturbed (beyond base's)",
        "retain - mention (beyond base's)",
        "fragile",
    ):
        table.add_column(h, justify="right")
    base_gap = {t: base["world-retain"] - base[t] for t in ("world-perturbed", "world-mention")}
    summary = {"base": base, "rows": {}}
    for (method, design), accs in rows.items():
        gaps = {
            t: [a["world-retain"] - a[t] for a in accs]
            for t in ("world-perturbed", "world-mention")
        }
        fragile = any(statistics.mean(g) - base_gap[t] >= FRAGILE for t, g in gaps.items())
        table.add_row(
            method,
            design,
            str(len(accs)),
            *(fmt([a[t] for a in accs]) for t in TASKS),
            *(
                f"{fmt(g)} ({100 * (statistics.mean(g) - base_gap[t]):+.1f})"
                for t, g in gaps.items()
            ),
            "yes" if fragile else "no",
        )
        summary["rows"][f"{method}/{design}"] = {"runs": accs, "fragile": fragile}
    out.print(table)
    out.print(
        "base: "
        + ", ".join(f"{t} {100 * a:.1f}" for t, a in base.items())
        + f"; fragile: a gap beyond the base's of >= {100 * FRAGILE:.0f} points"
    )
    write_json(args.root / "summary.json", summary)
    out.print(f"wrote {args.root / 'summary.json'}", markup=False)


if __name__ == "__main__":
    main()
