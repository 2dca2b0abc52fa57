"""Report and demo: `rnacli report` (runs against their base and plain twins) and `rnacli demo`
(the Gradio page)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnacli.cli.common import Device, Force, say, spec_paths
from rnacli.console import console
from rnacli.console import out as stdout
from rnacli.errors import RnacliError


def report_command(
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
        inputs=[*runs, *spec_paths([base])],
        ours=names("report.json", "report.png"),
        force=force,
    )
    comparison = compare(runs, base)
    for table in comparison_tables(comparison):
        stdout.print(table)
    write_json(out / "report.json", comparison.to_dict())
    with atomic_path(out / "report.png") as tmp:
        comparison_plot(comparison, tmp)
    say(f"wrote {out / 'report.json'} and {out / 'report.png'}")


def demo_command(
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
    device: Device = "auto",
    dtype: Annotated[str, typer.Option(help="auto, fp32, bf16, fp16.")] = "auto",
) -> None:
    """Gradio demo: base, unlearned and RNA side by side, forget-tokens inserted live."""
    from rnacli.demo.runs import quickstart_specs

    if not runs:
        runs, missing = quickstart_specs()
        if missing:
            console.print(f"not trained yet, left out: {', '.join(missing)}", markup=False)
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
