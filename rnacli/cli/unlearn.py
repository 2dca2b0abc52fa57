"""Unlearn: `rnacli train` (a recipe -> a run folder), `rnacli plan` (its memory, before any
download) and `rnacli recipes` (what recipes there are)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnacli.cli.common import Force, RecipeFile, say
from rnacli.console import stdout


def train_command(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML (see recipes/).")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe key: --set train.lr=1e-5 (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default runs/<recipe name>).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the run in the folder from its last checkpoint."),
    ] = False,
    steps: Annotated[int | None, typer.Option(help="Override train.steps.")] = None,
    full: Annotated[
        bool,
        typer.Option("--full", help="Also export a complete save_pretrained folder (RUN/full)."),
    ] = False,
    force: Force = False,
) -> None:
    """Unlearn a model with a recipe; writes a run folder that `rnacli eval` reads."""
    from rnacli.recipe import load_recipe
    from rnacli.training.preflight import preflight

    overrides = list(set_ or []) + ([f"train.steps={steps}"] if steps is not None else [])
    config = load_recipe(recipe, overrides)
    preflight(config)  # data, model and memory, before the (slow) imports and loads below
    from rnacli.models.loading import export_full
    from rnacli.training import loop

    run_dir = out or Path("runs") / config.name
    loop.train(config, run_dir, resume=resume, force=force)
    if full:
        say(f"full model: {export_full(run_dir, run_dir / 'full')}")
    say(f"run: {run_dir}")


def plan_command(
    recipe: RecipeFile,
    gpus: Annotated[int, typer.Option(help="GPUs (0: plan for the CPU).")] = 1,
    gpu_memory: Annotated[float | None, typer.Option(help="Memory per GPU in GiB.")] = None,
    strategy: Annotated[str, typer.Option(help="ddp (replicated) or fsdp (sharded).")] = "ddp",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe key (repeatable).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the plan as JSON.")
    ] = None,
    force: Force = False,
) -> None:
    """Estimate the peak memory of a training step (weights, reference, gradients, optimizer
    states, activations) from the model's config alone, before any download."""
    from rnacli.files.atomic import write_json
    from rnacli.runs.outputs import check_file
    from rnacli.training.plan import plan, render

    if json_out is not None:
        check_file(json_out, option="--json", inputs=[recipe], force=force)

    result = plan(str(recipe), list(set_ or []), gpus, gpu_memory, strategy)
    stdout.print(render(result))
    if json_out is not None:
        write_json(json_out, result)


def recipes_command(
    folder: Annotated[Path, typer.Argument(help="Folder of recipes.")] = Path("recipes"),
    keys: Annotated[
        bool, typer.Option("--keys", help="List every recipe key: type, default, description.")
    ] = False,
) -> None:
    """List recipes: method, RNA (noise scale, layers), steps, lr, the forms they compute
    (the paper's equations or the authors' code), model. --keys lists the recipe keys."""
    from rnacli.recipe import keys_table, recipes_tables

    for table in [keys_table()] if keys else recipes_tables(folder):
        stdout.print(table)
