"""Both sides of robustness per run, for `rnacli report`: the retain side (benign questions
that contain a forget-token: perturbed and mention tasks, their accuracy and reduction vs the
base, from the runs' eval.json) and the forget side (the share of the forgotten accuracy that
relearning, 8-bit and 4-bit quantization bring back, from RUN/attacks/)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rnacli.attacks.folder import read_attacks
from rnacli.attacks.splits import FORGET_PREFIXES, is_perturbed

# The attacks' columns, in this order where present: folder name -> heading
ATTACK_COLUMNS = {
    "relearn": "relearn",
    "quantize-8bit": "8-bit",
    "quantize-4bit-nf4": "4-bit NF4",
    "quantize-4bit-fp4": "4-bit FP4",
}


def _side_tasks(tasks: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(forget, retain, retain-side robustness) task names among a comparison's tasks."""
    robust = [t for t in tasks if is_perturbed(t)]
    forget = [t for t in tasks if t.lower().startswith(FORGET_PREFIXES) and t not in robust]
    retain = [t for t in tasks if t not in robust and t not in forget]
    return forget, retain, robust


def robustness_rows(comparison) -> list[dict[str, Any]]:
    """One row per run of a `Comparison`: label, method, RNA, accuracies of its forget and
    retain tasks, `retain_side` (task -> accuracy and reduction vs the base, fractions) and
    `forget_side` (attack -> recovery share with its interval, fractions; the attacks the
    run has). A run written before attacks existed has an empty forget side."""
    forget, retain, robust = _side_tasks(comparison.tasks)
    rows = []
    for run in comparison.runs:
        folder = Path(run.model)
        attacks = read_attacks(folder) if folder.is_dir() else {}
        by_task = {
            t: next((r for r in comparison.rows(t) if r["run"] == run.label), None)
            for t in comparison.tasks
        }
        rows.append(
            {
                "run": run.label,
                "method": run.method,
                "rna": run.rna,
                "accuracy": {t: by_task[t]["acc"] for t in forget + retain if by_task[t]},
                "retain_side": {
                    t: {"acc": by_task[t]["acc"], "reduction": _finite(by_task[t]["reduction"])}
                    for t in robust
                    if by_task[t]
                },
                "forget_side": {
                    name: attacks[name]["recovery"] for name in ATTACK_COLUMNS if name in attacks
                },
            }
        )
    return rows


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: an undefined rate is None."""
    return None if value is None or math.isnan(value) else value


def has_attacks(rows: list[dict[str, Any]]) -> bool:
    """Whether any run was attacked (else the report stays as it was before attacks)."""
    return any(row["forget_side"] for row in rows)
