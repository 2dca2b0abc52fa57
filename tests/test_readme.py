"""Every `rnacli` command line the README quotes parses with the real command line: the command
exists, every option exists, and values have the right type (a new user copies these)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from rnacli.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def quoted_commands(text: str) -> list[tuple[str, list[str]]]:
    """(where, arguments after `rnacli`) of every rnacli command in code blocks (strict) and
    inline code spans (`inline`: may name a command without its arguments)."""
    found: list[tuple[str, str]] = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
        found += [("block", line) for line in block.replace("\\\n", " ").splitlines()]
    # inline spans may wrap onto the next line
    found += [("inline", " ".join(s.split())) for s in re.findall(r"(?<!`)`(rnacli\b[^`]*)`", text)]
    commands = []
    for kind, line in found:
        line = line.split(" #")[0].strip()
        # `[--people 200]` is an optional part; `RUN...` a placeholder for several
        tokens = line.replace("[", " ").replace("]", " ").split()
        if "rnacli" not in tokens or (tokens[0] == "docker" and tokens[1] == "build"):
            continue
        i = tokens.index("rnacli")
        if i >= 2 and tokens[i - 2] == "--entrypoint":  # the image's other program
            continue
        args = [t.removesuffix("...") for t in tokens[i + 1 :]]
        if kind == "inline":
            args = [t.rstrip(".,;:'") for t in args if not t.startswith("'")]
        if args:
            commands.append((f"{kind}: rnacli {' '.join(args)}", args))
    return commands


def _inert(command) -> None:
    """Replace every command's body by nothing: invoking then only parses the arguments."""
    command.callback = lambda *args, **kwargs: None
    for sub in getattr(command, "commands", {}).values():
        _inert(sub)


def parse(args: list[str], *, strict: bool) -> None:
    """Parse `rnacli ARGS` with the command line's own parser, running nothing. Raises
    AssertionError with the CLI's message when it refuses them; `strict=False` lets a command
    be named without its required arguments (an inline mention)."""
    command = typer.main.get_command(app)
    _inert(command)
    try:
        command.main(args=list(args), prog_name="rnacli", standalone_mode=False)
    except Exception as e:  # typer's own (vendored) click exceptions
        missing = type(e).__name__ == "MissingParameter"
        if strict or not missing:
            message = e.format_message() if hasattr(e, "format_message") else str(e)
            raise AssertionError(f"rnacli {' '.join(args)}: {message}") from None


def test_the_parser_catches_a_wrong_option():
    with pytest.raises(AssertionError, match="No such option: --forget"):
        parse(["world", "build", "--forget", "0.1"], strict=True)
    with pytest.raises(AssertionError, match="Invalid value for '--limit'"):
        parse(["eval", "x", "--limit", "many"], strict=True)
    with pytest.raises(AssertionError, match="No such command 'evaluate'"):
        parse(["evaluate", "x"], strict=True)
    with pytest.raises(AssertionError, match="Missing"):
        parse(["train"], strict=True)
    parse(["train"], strict=False)  # an inline mention of a command
    parse(["world", "build", "--forget-fraction", "0.1"], strict=True)


def test_the_readme_quotes_commands():
    commands = quoted_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 40
    assert any(args[:2] == ["world", "build"] for _, args in commands)


@pytest.mark.parametrize(
    ("where", "args"),
    quoted_commands(README.read_text(encoding="utf-8")),
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_every_quoted_command_parses(where, args):
    parse(args, strict=where.startswith("block"))
