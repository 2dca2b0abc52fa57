"""What the world benchmarks (world_effect, world_po_designs, world_tradeoff) share: the world
recipes and tasks, their common arguments, a run trained and evaluated once and reused after,
the learned base's evaluation, and the grid's progress line."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rnacli.evaluate.results import EVAL_FILE, merge_eval, read_eval
from rnacli.evaluate.runner import evaluate_model
from rnacli.evaluate.tasks import resolve_tasks
from rnacli.recipe import load_recipe
from rnacli.runs.checkpoint import CHECKPOINT, read_meta
from rnacli.training.loop import train

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "world"
FORGET, RETAIN = "world-forget", "world-retain"
PERTURBED = ("world-perturbed", "world-mention")
TASKS = (FORGET, RETAIN, *PERTURBED)


def world_parser(
    doc: str, *, methods: str, seeds: str, root: str, limit: int
) -> argparse.ArgumentParser:
    """The arguments every world benchmark takes (its docstring's first line as description):
    --methods and --seeds (comma-separated, parsed to lists), --root (runs and summary),
    --limit (questions per retain-side task)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--methods", type=split, default=methods, help="e.g. rmu,npo_kl")
    parser.add_argument("--seeds", type=int_list, default=seeds)
    parser.add_argument("--root", type=Path, default=Path(root))
    parser.add_argument("--limit", type=int, default=limit, help="questions per retain-side task")
    return parser


def check_recipes(
    parser: argparse.ArgumentParser, methods: list[str], variants: tuple[str, ...] = ("", "_rna")
) -> None:
    """Exit 2 with argparse's usage line for a method without its recipes in recipes/world/."""
    for method in methods:
        for name in (f"{method}{variant}.toml" for variant in variants):
            if not (RECIPES / name).exists():
                parser.error(f"--methods: no recipe recipes/world/{name}")


def split(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [part.strip() for part in text.split(",") if part.strip()]


def int_list(text: str) -> list[int]:
    """argparse type: '0,1,2' -> [0, 1, 2]; anything else exits 2 with the usage line."""
    try:
        return [int(s) for s in split(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected integers, e.g. 0,1,2") from None


def with_correct(result: dict) -> dict:
    """A task's result as the summaries keep it: accuracy, question indices, right or not."""
    correct = [p == a for p, a in zip(result["predictions"], result["answers"], strict=True)]
    return {"acc": result["acc"], "indices": result["indices"], "correct": correct}


def evaluated(run_dir: Path, tasks) -> dict:
    """Per task of a run (evaluating what is missing): its accuracy and, per question, whether
    the answer was right (for the bootstrap intervals)."""
    done = read_eval(run_dir)[0]["tasks"] if (run_dir / EVAL_FILE).exists() else {}
    if not all(t.name in done for t in tasks):
        done = evaluate_model(str(run_dir), tasks, batch_size=32)["tasks"]
    return {t.name: with_correct(done[t.name]) for t in tasks}


def trained(recipe_path: Path, run_dir: Path, overrides: list[str]) -> Path:
    """`run_dir`, trained from the recipe with `overrides` (resuming; skipped when finished)."""
    recipe = load_recipe(recipe_path, overrides)
    meta = run_dir / CHECKPOINT / "meta.json"
    if not (meta.exists() and read_meta(run_dir)["step"] >= recipe.train.steps):
        train(recipe, run_dir, resume=True)
    return run_dir


def world_tasks(limit: int, retain_limit: int | None = None, suffix: str = "") -> list:
    """Every forget question, `retain_limit` (default `limit`) plain retain questions and
    `limit` of each perturbed form, of the world `suffix` names ('' the default, '[seed=1]')."""
    retain_limit = limit if retain_limit is None else retain_limit
    return (
        resolve_tasks([FORGET + suffix])
        + resolve_tasks([RETAIN + suffix], limit=retain_limit)
        + resolve_tasks([t + suffix for t in PERTURBED], limit=limit)
    )


def base_evaluated(root: Path, tasks, model: str = "world") -> dict:
    """`evaluated` for the learned base `model`, evaluated once into `root`/base."""
    base_dir = root / "base"
    if not (base_dir / EVAL_FILE).exists():
        merge_eval(base_dir, [evaluate_model(model, tasks, batch_size=32)])
    return evaluated(base_dir, tasks)


def accuracies(evaluation: dict) -> dict[str, float]:
    return {task: result["acc"] for task, result in evaluation.items()}


def grid_line(done: int, total: int, start: float) -> str:
    """'grid: 3/12 (4 min, eta 13 min)': `done` of `total` runs since `start` (monotonic)."""
    elapsed = time.monotonic() - start
    eta = elapsed / done * (total - done)
    return f"grid: {done}/{total} ({elapsed / 60:.0f} min, eta {eta / 60:.0f} min)"


def scores(acc: dict[str, float]) -> str:
    """'forget 12.0, retain 95.3, ...': accuracies (%) per task."""
    return ", ".join(f"{t.removeprefix('world-')} {100 * a:.1f}" for t, a in acc.items())
