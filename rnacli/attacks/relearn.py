"""The relearning attack: fine-tune the unlearned model for a few steps on part of the forget
data, then ask about the rest (Deeb & Roger 2024; Hu et al. 2024; Lynch et al. 2024).

The model is the run's (base + delta, in fp32; bf16 autocast where the run's recipe used it),
and the tensors that train are the run's trained ones unless `trainable` names others. The loss
is the cross-entropy of the relearn documents' scored tokens (a pair's completion, a text's every
token: what the world was learned with, `value_loss`), the optimizer the run's (AdamW or 8-bit
AdamW, `make_optimizer`) at the stated lr. The model is scored at each step of `steps` (0: the
unlearned model); the base is scored once on the same questions. Nothing is written to the
run's checkpoint.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from rnacli.attacks.folder import AttackFolder, questions, require_run
from rnacli.attacks.scores import Scores, accuracies, pooled, recovery, remembered, score
from rnacli.attacks.splits import AttackTasks, attack_tasks, run_recipe
from rnacli.console import console
from rnacli.data.batches import document_batch, pick
from rnacli.errors import RnacliError
from rnacli.files.atomic import atomic_path
from rnacli.models.loading import load_model, load_run_model, resolve_device
from rnacli.recipe import recipe_from_dict
from rnacli.runs.checkpoint import read_meta
from rnacli.runs.layout import RECIPE_JSON
from rnacli.runtime.precision import autocast, use_autocast
from rnacli.training.setup import make_optimizer, select_trainable
from rnacli.world.learn import value_loss

log = logging.getLogger(__name__)
NAME = "relearn"
CURVE = "curve.png"


@dataclass
class RelearnSettings:
    """What a relearning attack does; recorded in its folder (settings.json).

    `steps` are the optimizer steps after which the model is scored (the largest is how far
    relearning goes; 0, the unlearned model, is always scored); `lr` AdamW's learning rate;
    `batch_size` relearn documents a step, each at most `max_length` tokens; `share` of the
    forgotten people (the world) or forget documents relearned on, drawn with `seed`;
    `trainable` a regex of the tensors that train (None: the run's own); `limit` questions
    per retain task (None: the recipe's [eval] limit); `forget_tasks`/`retain_tasks` replace
    the recipe's (None: the recipe's, or the world's split by person)."""

    steps: list[int] = field(default_factory=lambda: [5, 10, 20, 40])
    lr: float = 1e-3
    batch_size: int = 8
    max_length: int = 64
    share: float = 0.5
    seed: int = 0
    trainable: str | None = None
    limit: int | None = None
    eval_batch_size: int = 32
    device: str = "auto"
    forget_tasks: list[str] | None = None
    retain_tasks: list[str] | None = None

    def check(self) -> None:
        """Raises RnacliError naming the option of a value out of range."""
        if not self.steps or min(self.steps) < 0 or max(self.steps) > 100_000:
            raise RnacliError(f"--steps {self.steps}: expected step counts in 0..100000")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise RnacliError(f"--lr {self.lr}: expected a learning rate in (0, 1]")
        if not 0 < self.share < 1:
            raise RnacliError(f"--relearn-share {self.share}: expected a share in (0, 1)")
        for option, value in (("batch-size", self.batch_size), ("max-length", self.max_length)):
            if value < 1:
                raise RnacliError(f"--{option} {value}: must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": sorted({0, *self.steps})}


def _trainable(model, run_dir: Path, pattern: str | None) -> dict[str, torch.nn.Parameter]:
    """The run's trained tensors (its delta's names), or those `pattern` matches."""
    if pattern is None:
        names = read_meta(run_dir)["tensors"]
        pattern = "^(" + "|".join(re.escape(n) for n in names) + ")$"
    return select_trainable(model, pattern, "--trainable")


def _optimizer(run_dir: Path, params: list, lr: float, device: torch.device):
    """The run's optimizer (AdamW or 8-bit AdamW, its weight decay) at `lr`."""
    recipe = recipe_from_dict(run_recipe(run_dir), str(run_dir / RECIPE_JSON))
    recipe.train = recipe.train.model_copy(update={"lr": lr})
    return make_optimizer(recipe, params, device), use_autocast(recipe.train.autocast, device)


class Relearner:
    """Relearning one run: `setup()` loads the unlearned model and picks its trainable tensors
    and optimizer; `train_step(step)` is one optimizer step on the relearn split; `run()`
    steps to the last point, scoring (or reusing the stored scores of) every point."""

    def __init__(self, run_dir: Path, settings: RelearnSettings, tasks: AttackTasks):
        self.run_dir, self.settings, self.tasks = run_dir, settings, tasks
        self.device = resolve_device(settings.device)

    def setup(self) -> None:
        s = self.settings
        # fp32 weights on any device: a bf16 weight would round small updates away
        self.model, self.tokenizer = load_run_model(
            self.run_dir, dtype="float32", device=str(self.device)
        )
        self.trainable = _trainable(self.model, self.run_dir, s.trainable)
        params = list(self.trainable.values())
        self.optimizer, self.bf16 = _optimizer(self.run_dir, params, s.lr, self.device)
        self.head = self.model.get_output_embeddings()

    def train_step(self, step: int) -> float:
        """One step on the batch `step` of seeded permutations of the relearn documents; its
        loss (nats per scored token). Raises RnacliError for a non-finite loss."""
        s, docs = self.settings, self.tasks.documents
        rows = [docs[i] for i in pick(len(docs), s.batch_size, step, s.seed, NAME)]
        seq = document_batch(self.tokenizer, rows, s.max_length).to(self.device)
        with autocast(self.bf16, self.device):
            loss = value_loss(self.model, self.head, seq)
        if not math.isfinite(loss.item()):
            raise RnacliError(f"relearn step {step + 1}: the loss is not finite; try a lower --lr")
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def run(self, folder: AttackFolder) -> dict[int, Scores]:
        """Scores at every point of the settings' steps (reused where stored)."""
        points = self.settings.to_dict()["steps"]
        scored: dict[int, Scores] = {}
        for step in range(points[-1] + 1):
            if step in points:
                scored[step] = folder.scored(f"step-{step}", self._score, f"after {step} steps")
            if step < points[-1]:
                loss = self.train_step(step)
                log.debug("relearn step %d: loss %.4f", step + 1, loss)
        return scored

    def _score(self) -> Scores:
        return score(self.model, self.tokenizer, self.tasks.all, self.settings.eval_batch_size)


def base_scores(run_dir: Path, folder: AttackFolder, tasks: AttackTasks, settings) -> Scores:
    """The run's base model on the attack's questions (stored as the stage `base`)."""

    base = read_meta(run_dir)["base_model"]

    def compute() -> Scores:
        model, tokenizer = load_model(base, device=settings.device)
        return score(model, tokenizer, tasks.all, settings.eval_batch_size)

    return folder.scored("base", lambda: remembered(base, "full", tasks.all, compute), "base model")


def relearn(run_dir: Path, settings: RelearnSettings, *, force: bool = False) -> dict[str, Any]:
    """Run (or reuse) the relearning attack on `run_dir`; its result.json as a dict: the
    settings, the people of each side (the world), the base's scores and, per step, the
    scores and the held-out forget questions' recovery share with its 95 % interval."""
    settings.check()
    require_run(run_dir)
    recipe = run_recipe(run_dir)
    tasks = attack_tasks(
        recipe,
        relearn=True,
        share=settings.share,
        seed=settings.seed,
        limit=settings.limit,
        forget_tasks=settings.forget_tasks,
        retain_tasks=settings.retain_tasks,
    )
    asked = {**settings.to_dict(), "questions": questions(tasks.all)}
    folder = AttackFolder(run_dir, NAME, asked, force=force)
    if folder.finished is not None:
        console.print(f"{folder.path}: finished before, reused (--force redoes it)", markup=False)
        return folder.finished
    base = base_scores(run_dir, folder, tasks, settings)
    relearner = Relearner(run_dir, settings, tasks)
    relearner.setup()
    points = relearner.run(folder)
    result = summarize(tasks, base, points)
    with atomic_path(folder.path / CURVE) as tmp:
        recovery_curve(result, tmp, run_dir.name)
    return folder.finish(result)


def summarize(tasks: AttackTasks, base: Scores, points: dict[int, Scores]) -> dict[str, Any]:
    """result.json's body: per step the accuracies and the held-out recovery share."""
    base_forget = pooled(base, tasks.forget)
    unlearned = pooled(points[0], tasks.forget)
    rows = []
    for step, scores in sorted(points.items()):
        rows.append(
            {
                "step": step,
                "accuracy": accuracies(scores),
                "held_out": recovery(base_forget, unlearned, pooled(scores, tasks.forget)),
                "relearned": _relearned(tasks, base, points[0], scores),
            }
        )
    return {
        "attack": NAME,
        "documents": len(tasks.documents),
        "people": tasks.people,
        "forget_tasks": [t.name for t in tasks.forget],
        "retain_tasks": [t.name for t in tasks.retain],
        "base": {"accuracy": accuracies(base)},
        "points": rows,
        "recovery": rows[-1]["held_out"],
        "scores": {"base": base, **{f"step-{s}": v for s, v in sorted(points.items())}},
    }


def _relearned(tasks: AttackTasks, base: Scores, unlearned: Scores, now: Scores) -> dict | None:
    """The recovery on the relearned people's own questions (the world; a sanity check)."""
    if not tasks.relearned:
        return None
    return recovery(
        pooled(base, tasks.relearned),
        pooled(unlearned, tasks.relearned),
        pooled(now, tasks.relearned),
    )


def recovery_curve(result: dict[str, Any], path: Path, title: str) -> None:
    """The recovery share of the held-out forget questions against relearning steps (with its
    95 % interval), and the relearned side's where there is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    steps = [p["step"] for p in result["points"]]
    for key, label, color in (
        ("held_out", "held-out forget questions", "tab:red"),
        ("relearned", "relearned forget questions", "tab:gray"),
    ):
        rows = [p[key] for p in result["points"] if p.get(key)]
        if len(rows) != len(steps):
            continue
        share = [_pct(r["recovery"]) for r in rows]
        ax.plot(steps, share, marker="o", color=color, label=label)
        ax.fill_between(
            steps,
            [_pct(r["low"]) for r in rows],
            [_pct(r["high"]) for r in rows],
            color=color,
            alpha=0.15,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axhline(100, color="gray", linestyle=":", linewidth=1, label="back to the base")
    ax.set_xlabel("relearning steps")
    ax.set_ylabel("recovered share of the forgotten accuracy (%)")
    ax.set_title(f"Relearning attack on {title}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130, format="png")
    plt.close(fig)


def _pct(value: float | None) -> float:
    return float("nan") if value is None else 100 * value
