"""Compare runs against a base model: accuracy per task, the paper's reduction rate vs the
base, and for each RNA run its recovery rate vs its plain twin (eqs. 14 and 15).

Twins are found from the runs' recipes: an RNA run's twin has the same model, data, method and
training settings with RNA off.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnacli.errors import RnacliError
from rnacli.evaluate.metrics import recovery_rate, reduction_rate
from rnacli.evaluate.results import read_eval
from rnacli.files.text import read_json
from rnacli.recipe import method_label

WMDP_AVG = "wmdp-avg"


@dataclass
class Run:
    label: str
    model: str
    tasks: dict[str, dict[str, Any]]
    recipe: dict[str, Any] | None = None
    twin: str | None = None  # label of the plain twin of an RNA run

    @property
    def rna(self) -> bool:
        return bool(self.recipe and self.recipe.get("rna", {}).get("enabled"))

    @property
    def method(self) -> str:
        if not self.recipe:
            return "-"
        m = self.recipe["method"]
        return method_label(m["name"], m.get("retain_loss"))


@dataclass
class Comparison:
    base: Run
    runs: list[Run]
    tasks: list[str] = field(default_factory=list)

    def rows(self, task: str) -> list[dict[str, Any]]:
        """Per run: accuracy, stderr, reduction vs base and recovery vs twin (fractions)."""
        base = self.base.tasks.get(task)
        by_label = {r.label: r for r in self.runs}
        out = []
        for run in [self.base, *self.runs]:
            res = run.tasks.get(task)
            if res is None:
                continue
            row = {
                "run": run.label,
                "method": run.method,
                "rna": run.rna,
                "n": res["n"],
                "acc": res["acc"],
                "stderr": res["stderr"],
                "reduction": None,
                "recovery": None,
                "twin": run.twin,
            }
            if base is not None and run is not self.base:
                row["reduction"] = reduction_rate(base["acc"], res["acc"])
                twin = by_label.get(run.twin) if run.twin else None
                if twin is not None and task in twin.tasks:
                    row["recovery"] = recovery_rate(
                        base["acc"], twin.tasks[task]["acc"], res["acc"]
                    )
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.label,
            "runs": [
                {
                    "label": r.label,
                    "model": r.model,
                    "method": r.method,
                    "rna": r.rna,
                    "twin": r.twin,
                }
                for r in self.runs
            ],
            "tasks": {t: [_finite(row) for row in self.rows(t)] for t in self.tasks},
        }


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: an undefined rate is null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _recipe_of(model: str) -> dict[str, Any] | None:
    path = Path(model) / "recipe.json"
    if not path.is_file():
        return None
    recipe = read_json(path)
    if not isinstance(recipe, dict):
        raise RnacliError(f"{path}: expected a JSON object (a run's resolved recipe)")
    return recipe


def load_runs(paths: list[Path]) -> list[Run]:
    """Every model entry of the given eval.json files / folders (a label once, first wins)."""
    runs: dict[str, Run] = {}
    for path in paths:
        for entry in read_eval(path):
            if entry["label"] not in runs:
                tasks = with_wmdp_average(entry["tasks"])
                runs[entry["label"]] = Run(
                    entry["label"], entry["model"], tasks, _recipe_of(entry["model"])
                )
    if not runs:
        raise RnacliError("no evaluated models found")
    return list(runs.values())


def with_wmdp_average(tasks: dict[str, Any]) -> dict[str, Any]:
    """Add the paper's 'WMDP (avg of Biology and Cyber)' when both are there."""
    bio, cyber = tasks.get("wmdp-bio"), tasks.get("wmdp-cyber")
    if bio is None or cyber is None:
        return tasks
    avg = {
        "n": bio["n"] + cyber["n"],
        "acc": (bio["acc"] + cyber["acc"]) / 2,
        "stderr": math.sqrt(bio["stderr"] ** 2 + cyber["stderr"] ** 2) / 2,
    }
    out: dict[str, Any] = {}
    for name, result in tasks.items():  # right after the later of the two, as the paper shows
        out[name] = result
        if name in ("wmdp-bio", "wmdp-cyber") and "wmdp-bio" in out and "wmdp-cyber" in out:
            out[WMDP_AVG] = avg
    return out


_IGNORED = ("name", "description", "eval", "rna")


def find_twins(runs: list[Run]) -> None:
    """Set `twin` of each RNA run: same recipe with RNA off (else same method and model)."""

    def key(run: Run) -> str:
        return json.dumps(
            {k: v for k, v in (run.recipe or {}).items() if k not in _IGNORED}, sort_keys=True
        )

    plain = [r for r in runs if r.recipe and not r.rna]
    for run in runs:
        if not run.rna:
            continue
        exact = [p for p in plain if key(p) == key(run)]
        loose = [
            p
            for p in plain
            if p.method == run.method and p.recipe["model"]["name"] == run.recipe["model"]["name"]
        ]
        match = (exact or loose or [None])[0]
        run.twin = match.label if match else None


def compare(paths: list[Path], base: str) -> Comparison:
    """Runs from `paths`, compared with `base` (a label among them, or a path of its own)."""
    runs = load_runs(paths)
    labels = [r.label for r in runs]
    if base in labels:
        base_run = runs.pop(labels.index(base))
    else:
        base_path = Path(base)
        if not base_path.exists():
            raise RnacliError(f"--base {base}: not a model among {', '.join(labels)} nor a path")
        candidates = load_runs([base_path])
        if len(candidates) != 1:
            raise RnacliError(
                f"--base {base}: holds {len(candidates)} models "
                f"({', '.join(c.label for c in candidates)}); name one"
            )
        base_run = candidates[0]
        runs = [r for r in runs if r.label != base_run.label]
    find_twins(runs)
    order = list(base_run.tasks) + [t for r in runs for t in r.tasks if t not in base_run.tasks]
    tasks = list(dict.fromkeys(t for t in order if any(t in r.tasks for r in runs)))
    return Comparison(base_run, runs, tasks)
