"""The `rnacli` command line: the app, its commands in panels in the order of the work, and
`main()`. The commands are thin (parse, call the modules below, print) and live one module per
group here (unlearn, evaluate, report, analysis, attack, data, world); common.py holds what they
share."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from rnacli.cli.analysis import (
    mine_tokens_command,
    perturb_command,
    sensitivity_command,
    sweep_command,
)
from rnacli.cli.attack import attack_app
from rnacli.cli.common import HELP_MARKUP, flags_without_a_type, quiet_libraries
from rnacli.cli.data import data_app, export_command, fetch_command
from rnacli.cli.evaluate import eval_command, export_tasks_command
from rnacli.cli.report import demo_command, report_command
from rnacli.cli.unlearn import plan_command, recipes_command, train_command
from rnacli.cli.world import world_app
from rnacli.console import console
from rnacli.errors import RnacliError

app = typer.Typer(
    name="rnacli",
    rich_markup_mode=HELP_MARKUP,
    help="Robust LLM unlearning: RMU, Adaptive RMU, RSV, NPO, DPO, SimNPO, with or without "
    "Random Noise Augmentation (RNA).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# `rnacli --help` shows the panels, and the commands in each, in this order: the order of the
# work. Typer lists a panel where its first command comes and the sub-apps after the commands.
COMMANDS = {
    "Unlearn": {"train": train_command, "plan": plan_command, "recipes": recipes_command},
    "Evaluate": {"eval": eval_command, "export-tasks": export_tasks_command},
    "Report and demo": {"report": report_command, "demo": demo_command},
    "Analyses": {
        "sweep": sweep_command,
        "sensitivity": sensitivity_command,
        "perturb": perturb_command,
        "mine-tokens": mine_tokens_command,
    },
    "Data and models": {"fetch": fetch_command, "export": export_command},
}
SUB_APPS = {
    "Analyses": {"attack": attack_app},  # listed after the panel's commands
    "Data and models": {"world": world_app, "data": data_app},
}

for panel, commands in COMMANDS.items():
    for name, function in commands.items():
        app.command(name, rich_help_panel=panel)(function)
for panel, sub_apps in SUB_APPS.items():
    for name, sub_app in sub_apps.items():
        app.add_typer(sub_app, name=name, rich_help_panel=panel)


def main() -> None:
    """The `rnacli` program: bad input is one error line and exit code 2, Ctrl-C exit 130."""
    quiet_libraries()
    flags_without_a_type()
    try:
        app()
    except RnacliError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        sys.exit(130)
