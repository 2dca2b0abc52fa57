"""Report and demo: `rnacli report` (runs against their base and plain twins) and `rnacli demo`
(the Gradio page)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rnacli.cli.common import Device, Force, say, spec_paths
from rnacli.console import console, stdout
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
    """Reduction rate vs the base and RNA recovery rate vs the plain twin, per task; with
    attacked runs (`rnacli attack`), both sides of robustness in one table and robustness.png."""
    from rnacli.evaluate.comparison import compare
    from rnacli.evaluate.report import comparison_plot, comparison_tables
    from rnacli.files.atomic import atomic_path, write_json
    from rnacli.runs.outputs import check_folder, names

    check_folder(
        out,
        writes=[out / "report.json", out / "report.png", out / "robustness.png"],
        inputs=[*runs, *spec_paths([base])],
        ours=names("report.json", "report.png", "robustness.png"),
        force=force,
    )
    comparison = compare(runs, base)
    for table in comparison_tables(comparison):
        stdout.print(table)
    report = comparison.to_dict()
    written = _robustness(comparison, out, report)
    write_json(out / "report.json", report)
    with atomic_path(out / "report.png") as tmp:
        comparison_plot(comparison, tmp)
    say(f"wrote {out / 'report.json'} and {out / 'report.png'}{written}")


def _robustness(comparison, out: Path, report: dict) -> str:
    """Where runs were attacked: the robustness table printed, its rows added to `report`
    (key `robustness`) and robustness.png written; returns the words to add to the result
    line. Runs without attacks leave the report as it was."""
    from rnacli.attacks.robustness import ATTACK_COLUMNS, has_attacks, robustness_rows
    from rnacli.evaluate.report import robustness_plot, robustness_table
    from rnacli.files.atomic import atomic_path

    rows = robustness_rows(comparison)
    if not has_attacks(rows):
        return ""
    stdout.print(robustness_table(rows, ATTACK_COLUMNS))
    report["robustness"] = rows
    with atomic_path(out / "robustness.png") as tmp:
        robustness_plot(rows, ATTACK_COLUMNS, tmp)
    return f" and {out / 'robustness.png'}"


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
