"""Both sides of robustness on the fictional world, over seeds (issue 23): the README's table.

    python benchmarks/world_attacks.py [--runs runs/attack-world] [--seeds 0,1,2]

Reads, for each recipe of RECIPES and seed, the run folder RUNS/<recipe>-s<seed> after
`rnacli eval RUN` and `rnacli attack all RUN` (the README's commands), and RUNS/base (`rnacli
eval world ... --out RUNS/base`). Prints one markdown row per recipe: mean (± std over seeds)
of forget, retain, perturbed and mention accuracy (the retain side), and per attack the forget
accuracy after it and the recovered share of the forgotten accuracy with a 95 % bootstrap
interval over seeds and questions together (`recovery_interval`; the forget side). A seed
whose attacks are not all finished is left out (its row names the seeds it has).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rnacli.evaluate.metrics import recovery_interval, recovery_rate

RECIPES = {
    "rmu": "RMU",
    "rmu_rna": "RMU+RNA (model side, layer 7)",
    "simnpo_kl": "SimNPO+KL",
    "simnpo_kl_rna": "SimNPO+KL+RNA (reference side, layer 8)",
}
ATTACKS = ("relearn", "quantize-8bit", "quantize-4bit-nf4")
HEADER = [
    "run",
    "seeds",
    "forget",
    "retain",
    "perturbed",
    "mention",
    "relearn: held-out forget (unlearned -> after)",
    "relearn: recovered [95 % CI]",
    "relearned people (unlearned -> after)",
    "8-bit: forget",
    "8-bit: recovered [95 % CI]",
    "4-bit NF4: forget",
    "4-bit NF4: recovered [95 % CI]",
]


def mean_std(values: list[float]) -> str:
    """'28.0 ± 1.2' (percent; the std over seeds, ddof 1), or the value of one seed."""
    xs = 100 * np.asarray(values, dtype=float)
    return f"{xs.mean():.1f}" + (f" ± {xs.std(ddof=1):.1f}" if len(xs) > 1 else "")


def recovered(base: list[int], unlearned: list[list[int]], attacked: list[list[int]]) -> str:
    """The recovered share of the seed means and its 95 % interval, '+6 % [-19, +26]'."""
    b, u, a = (np.asarray(x, dtype=float) for x in (base, unlearned, attacked))
    share = recovery_rate(b.mean(), u.mean(), a.mean())
    low, high, _ = recovery_interval(b, u, a)
    if np.isnan(share):
        return "-"
    pct = [round(100 * float(v)) for v in (share, low, high)]  # ints: never "-0"
    return f"{pct[0]:+d} % [{pct[1]:+d}, {pct[2]:+d}]"


def correct(result: dict, stage: str) -> list[int]:
    """Per-question correctness of an attack's stage on its pooled forget questions."""
    return [c for t in result["forget_tasks"] for c in result["scores"][stage][t]["correct"]]


def row(label: str, runs: list[Path]) -> list[str]:
    """One table row from the finished runs of one recipe."""
    evals = [json.loads((r / "eval.json").read_text())["models"][0]["tasks"] for r in runs]
    attacks = [
        {n: json.loads((r / "attacks" / n / "result.json").read_text()) for n in ATTACKS}
        for r in runs
    ]
    cells = [label, ",".join(r.name.rsplit("-s", 1)[1] for r in runs)]
    cells += [
        mean_std([e[f"world-{t}"]["acc"] for e in evals])
        for t in ("forget", "retain", "perturbed", "mention")
    ]
    relearn = [a["relearn"] for a in attacks]
    last = f"step-{relearn[0]['points'][-1]['step']}"
    before = mean_std([r["recovery"]["acc_unlearned"] for r in relearn])
    cells.append(f"{before} -> {mean_std([r['recovery']['acc_after'] for r in relearn])}")
    cells.append(
        recovered(
            correct(relearn[0], "base"),
            [correct(r, "step-0") for r in relearn],
            [correct(r, last) for r in relearn],
        )
    )
    own = [[r["points"][i]["accuracy"]["relearned-forget"] for r in relearn] for i in (0, -1)]
    cells.append(f"{mean_std(own[0])} -> {mean_std(own[1])}")
    for name in ATTACKS[1:]:
        quantized = [a[name] for a in attacks]
        cells.append(mean_std([q["recovery"]["acc_after"] for q in quantized]))
        cells.append(
            recovered(
                correct(quantized[0], "base"),
                [correct(q, "unlearned") for q in quantized],
                [correct(q, "quantized") for q in quantized],
            )
        )
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/attack-world"))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds {args.seeds}: expected integers such as 0,1,2")
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for recipe, label in RECIPES.items():
        runs = [args.runs / f"{recipe}-s{s}" for s in seeds]
        done = [
            r for r in runs if all((r / "attacks" / n / "result.json").is_file() for n in ATTACKS)
        ]
        if done:
            print("| " + " | ".join(row(label, done)) + " |")
    base = json.loads((args.runs / "base" / "eval.json").read_text())["models"][0]["tasks"]
    accs = " | ".join(
        f"{100 * base[f'world-{t}']['acc']:.1f}"
        for t in ("forget", "retain", "perturbed", "mention")
    )
    print(f"| base (`world`) | | {accs} | 100.0 | | 100.0 | | | | |")


if __name__ == "__main__":
    main()
