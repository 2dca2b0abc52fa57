"""The `rnacli world` commands: a fictional world where unlearning effects show on a CPU."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from rnacli.cli.common import HELP_MARKUP, say
from rnacli.console import stdout

world_app = typer.Typer(
    help="A fictional world where unlearning effects show on a CPU.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)


def _world_default(field: str) -> Any:
    from rnacli.world.generate import WorldSpec

    return getattr(WorldSpec(), field)


@world_app.command("build")
def world_build_command(
    people: Annotated[
        int | None, typer.Option(help="Fictional people in the world [default: 80].")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of names, attributes and the split.")] = 0,
    forget_fraction: Annotated[
        float | None, typer.Option(help="Share of the people to forget [default: 0.25].")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a learning setting: --set epochs=10, --set lr=2e-3, --set "
            "extra_epochs=20 (the cap on epochs past the schedule while below the 95 % target) "
            "(repeatable; see rnacli/world/learn.py LearnConfig).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
) -> None:
    """Generate the world and teach it to the embedded model (cached; reused on a second call).
    A world below the target after the schedule trains on until its check passes; one still
    below at the cap is an error (exit 2), not a base."""
    from rnacli.recipe import parse_override
    from rnacli.world.generate import WorldSpec, validate
    from rnacli.world.learn import build, build_info, learn_config
    from rnacli.world.summary import build_table, usage_hint

    spec = WorldSpec(
        people=_world_default("people") if people is None else people,
        seed=seed,
        forget_fraction=(
            _world_default("forget_fraction") if forget_fraction is None else forget_fraction
        ),
    )
    validate(spec)
    overrides = {}
    for item in set_ or []:
        keys, value = parse_override(item)
        overrides[".".join(keys)] = value
    config = learn_config(overrides)
    folder = build(spec, config, force=force)
    stdout.print(build_table(spec, build_info(spec, config), folder))
    say(usage_hint(spec))
