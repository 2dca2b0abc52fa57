"""What an attack trains on and asks: the relearn split of the forget data, the held-out forget
questions (never in the relearn split), and the retain questions.

On the fictional world the split is by person: a seeded share of the forgotten people gives
every fact of theirs (each template, as (prompt, completion) pairs, the recipes' forget-qa
form) to relearn on, and the held-out questions are the `world-forget` questions of the
others, so no person is in both. For other recipes (WMDP-style corpora) the relearn split is a
seeded share of the forget corpus's documents, and the held-out questions are the recipe's
forget tasks ([eval] tasks named wmdp-*, forget* or world-forget*), which the corpus does not
state (`qasplit:...@train` corpora against `@test` questions; WMDP's corpora against its
questions).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnacli.data import load_corpus
from rnacli.data.records import Document
from rnacli.errors import RnacliError
from rnacli.evaluate.tasks import TaskDocs, resolve_task
from rnacli.files.text import read_json
from rnacli.runs.layout import RECIPE_JSON
from rnacli.world.generate import World, generate, parse_spec

# Names of the recipe's [eval] tasks that ask what was forgotten (an alias counts: forget-bio=)
FORGET_PREFIXES = ("wmdp", "forget", "world-forget")
# Retain-side robustness tasks: `rnacli report` reads them from the run's eval.json
PERTURBED_MARKS = ("perturbed", "mention")
# controls, not forget-token perturbations: the world's options line, a retained person's name
CONTROL_MARKS = ("-listed", "-retained")


def is_perturbed(task: str) -> bool:
    """A retain-side robustness task (a forget-token in a retain question), not a control."""
    name = task.lower().split("[")[0]
    return any(m in name for m in PERTURBED_MARKS) and not any(m in name for m in CONTROL_MARKS)


@dataclass
class AttackTasks:
    """The questions of an attack, and for relearning what it trains on."""

    forget: list[TaskDocs]  # the held-out forget questions (relearning never sees them)
    retain: list[TaskDocs]
    relearned: list[TaskDocs] = field(default_factory=list)  # forget questions relearned on
    documents: list[Document] = field(default_factory=list)  # the relearn split
    people: dict[str, list[str]] = field(default_factory=dict)  # world: names per side

    @property
    def all(self) -> list[TaskDocs]:
        return [*self.forget, *self.relearned, *self.retain]


def run_recipe(run_dir: Path) -> dict[str, Any]:
    """The run's resolved recipe (recipe.json) as a dict; one RnacliError line if unreadable."""
    path = run_dir / RECIPE_JSON
    if not path.is_file():
        raise RnacliError(f"{path}: missing (the run folder is damaged)")
    raw = read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        raise RnacliError(f"{path}: expected a JSON object (a run's resolved recipe)")
    return raw


def world_of_recipe(recipe: dict[str, Any]) -> World | None:
    """The generated world a recipe forgets from (its forget corpora are `world...:`), or None."""
    sources = recipe["data"].get("forget") or []
    worlds = {s.rpartition(":")[0] for s in sources if str(s).startswith("world")}
    if not worlds:
        return None
    if len(worlds) > 1:
        raise RnacliError(f"the run forgets from several worlds ({', '.join(sorted(worlds))})")
    return generate(parse_spec(worlds.pop()))


def _world_task(world: World, task: str) -> str:
    """'world-forget' on the default world, 'world-forget[seed=1]' on another."""
    name = world.spec.name
    return task if name == "world" else f"{task}{name.removeprefix('world')}"


def _keep(task: TaskDocs, name: str, wanted: set[str]) -> TaskDocs:
    """The questions of `task` that mention one of the `wanted` names (world names are unique
    and no name's word is reused, so containment is unambiguous)."""
    keep = [i for i, r in enumerate(task.records) if any(n in r["question"] for n in wanted)]
    return TaskDocs(
        name,
        task.source,
        task.description,
        [task.records[i] for i in keep],
        [task.indices[i] for i in keep],
        scoring=task.scoring,
    )


def world_split(world: World, share: float, seed: int, retain_limit: int | None) -> AttackTasks:
    """Relearn on every fact of a seeded `share` of the forgotten people; ask the forget
    questions of the others (held-out) and of them (relearned), and `retain_limit` retain
    questions. Raises RnacliError when either side would be empty."""
    people = list(world.forget)
    random.Random(f"rnacli-relearn:{seed}").shuffle(people)
    n = round(share * len(people))
    if not 0 < n < len(people):
        raise RnacliError(
            f"--relearn-share {share}: {n} of {len(people)} forgotten people to relearn on; "
            "both the relearned and the held-out side need at least one"
        )
    relearn, held = sorted(people[:n]), sorted(people[n:])
    names = {
        side: [world.people[i].name for i in idx]
        for side, idx in (("relearn", relearn), ("held_out", held))
    }
    forget = resolve_task(_world_task(world, "world-forget"))[0]
    return AttackTasks(
        forget=[_keep(forget, "held-out-forget", set(names["held_out"]))],
        relearned=[_keep(forget, "relearned-forget", set(names["relearn"]))],
        retain=resolve_task(_world_task(world, "world-retain"), limit=retain_limit),
        documents=list(world.fact_parts(relearn)),
        people=names,
    )


def recipe_tasks(recipe: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(forget task names, retain task names) of a recipe's [eval] tasks: perturbed and
    mention tasks are left to `rnacli eval` and `rnacli report` (the retain side)."""
    tasks = list((recipe.get("eval") or {}).get("tasks") or [])
    forget = [t for t in tasks if t.lower().startswith(FORGET_PREFIXES)]
    retain = [t for t in tasks if t not in forget and not is_perturbed(t)]
    if not forget:
        raise RnacliError(
            f"the run's [eval] tasks ({', '.join(tasks) or 'none'}) name no forget task "
            f"(a name starting with {', '.join(FORGET_PREFIXES)}); pass --forget-tasks"
        )
    return forget, retain


def resolve(names: list[str], limit: int | None, seed: int) -> list[TaskDocs]:
    """Task names -> questions (a seeded `limit` per task)."""
    return [t for n in names for t in resolve_task(n, limit=limit, seed=seed)]


def corpus_split(
    recipe: dict[str, Any], forget: list[TaskDocs], retain: list[TaskDocs], share: float, seed: int
) -> AttackTasks:
    """Relearn on a seeded `share` of each forget corpus's documents; ask `forget` (held out
    from the corpus by construction) and `retain`."""
    documents: list[Document] = []
    for source in recipe["data"]["forget"]:
        docs = load_corpus(source)
        order = list(range(len(docs)))
        random.Random(f"rnacli-relearn:{seed}:{source}").shuffle(order)
        documents += [docs[i] for i in sorted(order[: max(1, round(share * len(docs)))])]
    return AttackTasks(forget=forget, retain=retain, documents=documents)


def attack_tasks(
    recipe: dict[str, Any],
    *,
    relearn: bool,
    share: float = 0.5,
    seed: int = 0,
    limit: int | None = None,
    forget_tasks: list[str] | None = None,
    retain_tasks: list[str] | None = None,
) -> AttackTasks:
    """The questions of an attack on a run of `recipe` (and, with `relearn`, its relearn
    split). `limit` questions per task (default: the recipe's [eval] limit), sampled as
    `rnacli eval` samples them; `forget_tasks`/`retain_tasks` replace the recipe's (on the
    world, given forget tasks turn off the split by person)."""
    evaluation = recipe.get("eval") or {}
    limit = evaluation.get("limit") if limit is None else limit
    eval_seed = int(evaluation.get("seed", 0))
    world = world_of_recipe(recipe) if forget_tasks is None else None
    if world is not None:
        split = world_split(world, share if relearn else 0.5, seed, limit)
        if retain_tasks is not None:
            split.retain = resolve(retain_tasks, limit, eval_seed)
        if relearn:
            return split
        forget = resolve([_world_task(world, "world-forget")], limit, eval_seed)
        return AttackTasks(forget=forget, retain=split.retain)
    if forget_tasks is None or retain_tasks is None:
        forget_default, retain_default = recipe_tasks(recipe)
        forget_tasks = forget_default if forget_tasks is None else forget_tasks
        retain_tasks = retain_default if retain_tasks is None else retain_tasks
    forget = resolve(forget_tasks, limit, eval_seed)
    retain = resolve(retain_tasks, limit, eval_seed)
    if relearn:
        return corpus_split(recipe, forget, retain, share, seed)
    return AttackTasks(forget=forget, retain=retain)
