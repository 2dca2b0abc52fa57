"""What `rnacli world build` prints: a built world as a table, and how to use it. The build's
own record (`build.json`, read by `world.learn.build_info`) comes in as a dict, so that this
module stays beside the generator, below the learning (tests/test_layout.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from rnacli.world.generate import SETS, WorldSpec, generate, qa_sets


def build_table(spec: WorldSpec, info: dict[str, Any], model: Path) -> Table:
    """Rows: the people (forget / retain), the questions of each set, the learning time
    (`info["seconds"]`, `info["history"]`: one entry per epoch), the accuracy checks
    (`info["accuracy"]` over `info["check_questions"]` questions each), the weights'
    fingerprint and the learned `model` folder."""
    world = generate(spec)
    table = Table(title=f"World {spec.key}", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("people (forget / retain)", f"{len(world.forget)} / {len(world.retain)}")
    for name, records in qa_sets(world).items():
        table.add_row(f"questions: {name}", str(len(records)))
    seconds, epochs = sum(info["seconds"].values()), len(info["history"])
    extra = info.get("extra_epochs", 0)  # past the schedule, to reach the target
    more = f" ({epochs - extra} + {extra} to reach the target)" if extra else ""
    table.add_row("learned in", f"{epochs} epochs{more}, {seconds / 60:.1f} min")
    for key, value in info["accuracy"].items():
        form = "letter" if key.endswith("-mcq") else "cloze"
        n = info["check_questions"]
        table.add_row(f"{form} accuracy, {key.removesuffix('-mcq')} ({n})", f"{100 * value:.1f} %")
    table.add_row("fingerprint", info["fingerprint"].split(":")[-1][:16])
    table.add_row("model", escape(str(model)))
    return table


def usage_hint(spec: WorldSpec) -> str:
    """One plain line (no rich markup: world names hold brackets): the model name and tasks
    of this world, and for a world other than the default what to change in its recipes."""
    suffix = spec.name.removeprefix("world")
    tasks = ", ".join(f"world-{t}{suffix}" for t in SETS)
    letters = ", ".join(f"world-{t}-mcq{suffix}" for t in SETS[:4])
    return (
        f"use it: model name '{spec.name}'; tasks {tasks} (cloze), {letters} (letters); "
        "recipes in recipes/world/"
        + (
            f", which use the default world: for this one set model.name = {spec.name} and "
            f"the data sources {spec.name}:forget-qa, {spec.name}:retain-facts"
            if suffix
            else ""
        )
    )
