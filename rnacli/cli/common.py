"""What the command modules share: option types, checks of option values, plain result lines,
and the setup `main()` does before any command runs."""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler

from rnacli.console import console, stdout
from rnacli.errors import RnacliError

# Markdown help: rich markup would eat "[eval]", and single line breaks of a docstring would
# break the commands list mid-sentence.
HELP_MARKUP = "markdown"

Models = Annotated[
    list[str],
    typer.Argument(help="Models: Hub id, local folder, .gguf file, run folder, or smollm2-135m."),
]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Write into a target that holds other files (never over this command's input).",
    ),
]
RecipeFile = Annotated[Path, typer.Argument(help="Recipe TOML.")]
Keywords = Annotated[list[str] | None, typer.Option(help="Forget keyword (repeatable).")]
KeywordsFile = Annotated[Path | None, typer.Option(help="JSON {set: \\[keywords]}.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda.")]


def say(text: str) -> None:
    """Print one result line (a path written, a count) on stdout as plain text: the paths and
    names in it are the user's, and rich markup would eat a `[...]` in them (world[seed=1])."""
    stdout.print(text, markup=False)


def task_list(text: str) -> list[str]:
    """'mmlu,world-retain[people=16,seed=1]' -> the task names (a comma inside [...] is part
    of the name)."""
    return [t.strip() for t in re.split(r",(?![^\[]*\])", text) if t.strip()]


def at_least(minimum: int, **values: int | None) -> None:
    """One error line for an option below its minimum (--batch-size 0, --limit 0); None passes.

    Raises RnacliError naming the option (`batch_size` -> `--batch-size`)."""
    for name, value in values.items():
        if value is not None and value < minimum:
            raise RnacliError(f"--{name.replace('_', '-')} {value}: must be at least {minimum}")


def finite(**values: float | None) -> None:
    """One error line for an option that is not a finite number >= 0 (nan, inf, -1); None
    passes. Raises RnacliError naming the option."""
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise RnacliError(f"--{name.replace('_', '-')} {value}: expected a finite number >= 0")


def spec_paths(specs: list[str]) -> list[Path]:
    """Models named by local paths (what a command reads, so must not write over)."""
    return [Path(s).expanduser() for s in specs if Path(s).expanduser().exists()]


def parse_layers(text: str) -> int | list[int] | str:
    """'7' -> 7, '5,6,7' -> [5, 6, 7], 'early' -> 'early' (resolve_layers checks the names)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if all(p.lstrip("-").isdigit() for p in parts) and parts:
        return int(parts[0]) if len(parts) == 1 else [int(p) for p in parts]
    return text.strip()


def quiet_libraries() -> None:
    """Our own progress bars and one-line errors replace the libraries' chatter."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    logging.getLogger("rnacli").setLevel(logging.INFO)
    for noisy in ("datasets", "huggingface_hub", "lm_eval", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def flags_without_a_type() -> None:
    """Typer shows a value type beside every option, `<bool>` beside flags too (--force,
    --help), which take no value: show none there."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_rnacli", False):
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        return None if getattr(self, "is_bool_flag", False) else shown(self, ctx)

    display_type_rich._rnacli = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
