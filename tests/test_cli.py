import json
import sys

import pytest
from typer.testing import CliRunner

from rnacli.cli import app, main

runner = CliRunner()


def test_eval_writes_table_and_eval_json(tiny_model_dir, qa_file, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "eval",
            str(tiny_model_dir),
            "--tasks",
            f"{qa_file},perturbed-{qa_file}",
            "--limit",
            "8",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "eval.json").read_text())
    [entry] = data["models"]
    tasks = entry["tasks"]
    assert set(tasks) == {str(qa_file), f"perturbed-{qa_file}"}
    assert tasks[str(qa_file)]["n"] == 8
    assert tasks[str(qa_file)]["indices"] == tasks[f"perturbed-{qa_file}"]["indices"]
    assert tasks[f"perturbed-{qa_file}"]["keywords"] == ["SARS-CoV-2"]
    assert 0.0 <= tasks[str(qa_file)]["acc"] <= 1.0
    # the table says which keyword the perturbed task inserted (the default, here)
    assert f"perturbed-{qa_file}: forget keyword SARS-CoV-2" in " ".join(result.output.split())
    # a second evaluation of another task merges into the same file
    result = runner.invoke(
        app,
        ["eval", str(tiny_model_dir), "--tasks", str(qa_file), "--keyword", "x", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    tasks = json.loads((out / "eval.json").read_text())["models"][0]["tasks"]
    assert tasks[str(qa_file)]["n"] == 12
    assert f"perturbed-{qa_file}" in tasks


def test_perturb_command(qa_file, tmp_path):
    result = runner.invoke(
        app,
        [
            "perturb",
            str(qa_file),
            "--out",
            str(tmp_path / "p"),
            "--keyword",
            "SARS-CoV-2",
            "--keyword",
            "anthrax toxin",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (tmp_path / "p" / "perturbed-anthrax_toxin.jsonl").open()]
    assert len(rows) == 12
    assert all("anthrax toxin" in r["choices"] for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "nope-model", "--tasks", "mmlu"], "error: unknown model 'nope-model'"),
        (["eval", "x", "--tasks", "no-such-task"], "error: unknown task 'no-such-task'"),
        # a user's brackets are text, not rich markup
        (["eval", "nope[x=1]", "--tasks", "mmlu"], "error: unknown model 'nope[x=1]'"),
    ],
)
def test_errors_are_one_line_without_traceback(monkeypatch, capsys, args, message):
    monkeypatch.setattr(sys, "argv", ["rnacli", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split())
    assert "Traceback" not in err


def test_task_lists_keep_a_worlds_settings_whole():
    from rnacli.cli.common import task_list

    assert task_list("mmlu, world-retain[people=16,seed=1],perturbed-mmlu,") == [
        "mmlu",
        "world-retain[people=16,seed=1]",
        "perturbed-mmlu",
    ]


def test_help_shows_defaults_whole_and_no_types_beside_flags(monkeypatch, capsys):
    """`rnacli eval --help`: "[eval]" is kept (not eaten as markup), the --tasks default is
    whole, the default keyword is named, flags carry no `<bool>`, and the commands list does
    not break a description mid-sentence."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", ["rnacli", "eval", "--help"])
    with pytest.raises(SystemExit):
        main()
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "a run's recipe [eval] tasks, else wmdp-bio, wmdp-cyber," in text
    assert "perturbed-mmlu" in text and "…" not in text
    assert "default: SARS-CoV-2" in text
    assert "<bool>" not in text and "--no-trust-remote-code" not in text
    monkeypatch.setattr(sys, "argv", ["rnacli", "--help"])
    with pytest.raises(SystemExit):
        main()
    lines = capsys.readouterr().out.splitlines()
    plan = next(i for i, line in enumerate(lines) if "│ plan " in line)
    # "optimizer" once ended a line of its own: the docstring's line break was kept
    assert "optimizer states" in " ".join(lines[plan : plan + 2]).replace("│", " ")


def test_help_lists_the_commands_in_panels_in_the_order_of_the_work(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", ["rnacli", "--help"])
    with pytest.raises(SystemExit):
        main()
    panels: list[tuple[str, list[str]]] = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("╭─ "):
            panels.append((line.strip("╭─╮ "), []))
        elif line.startswith("│ ") and line[2] != " " and panels:  # not a wrapped description
            panels[-1][1].append(line.split()[1])
    assert panels == [
        ("Options", ["--help"]),
        ("Unlearn", ["train", "plan", "recipes"]),
        ("Evaluate", ["eval", "export-tasks"]),
        ("Report and demo", ["report", "demo"]),
        ("Analyses", ["sweep", "sensitivity", "perturb", "mine-tokens", "attack"]),
        ("Data and models", ["fetch", "export", "world", "data"]),
    ]


def test_printed_paths_and_tables_keep_the_users_brackets(qa_file, tmp_path):
    """Rich markup would eat `[seed=1]` from a path, a world name or a table's title."""
    from rich.console import Console

    from rnacli.analysis.sensitivity import sensitivity_table
    from rnacli.world.generate import WorldSpec
    from rnacli.world.summary import usage_hint

    out = tmp_path / "p[seed=1]"
    result = runner.invoke(app, ["perturb", str(qa_file), "--out", str(out), "--keyword", "x"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'perturbed-x.jsonl'}" in " ".join(result.output.split())
    assert "model name 'world[seed=1]'" in usage_hint(WorldSpec(seed=1))
    console = Console(record=True)
    stats = {"mean": 0.5, "stderr": 0.1, "n": 2}
    console.print(sensitivity_table({"run[a]": {3: stats}}, "world[seed=1]:forget-qa", 2))
    text = "".join(console.export_text().split())  # the title wraps to the table's width
    assert "documentsofworld[seed=1]:forget-qa" in text and "run[a]" in text
