"""Which models the demo serves: the run folders and the one base model named at start, or,
with nothing named, the world model and the quickstart's runs.

The quickstart's run names live in one file, `rnacli/world/quickstart.txt`, read by the
Makefile (`make quickstart` trains them) and by `rnacli demo` (which serves them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from rnacli.errors import RnacliError
from rnacli.models.loading import EMBEDDED_MODELS, is_run_dir

QUICKSTART_ROOT = Path("runs/world")  # where `make quickstart` writes its runs (RUNS=runs)


def quickstart_names() -> list[str]:
    """The run names of `rnacli/world/quickstart.txt`, in order (comments and blanks skipped)."""
    text = resources.files("rnacli").joinpath("world", "quickstart.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def quickstart_specs(root: Path = QUICKSTART_ROOT) -> tuple[list[str], list[str]]:
    """The quickstart's finished runs under `root`, and the names still missing there.
    Raises RnacliError (one line, saying what to run) when none is finished."""
    names = quickstart_names()
    found = [str(root / n) for n in names if is_run_dir(root / n)]
    missing = [n for n in names if not is_run_dir(root / n)]
    if not found:
        raise RnacliError(
            f"no quickstart runs in {root}/ ({', '.join(names)}): run `make quickstart` first, "
            "or name the runs to compare: rnacli demo RUN..."
        )
    return found, missing


def _is_model_name(spec: str) -> bool:
    """A plain model the loader finds without the network: a path, embedded, the world, or a
    Hub id in the local Hugging Face cache."""
    if Path(spec).expanduser().exists() or spec in EMBEDDED_MODELS:
        return True
    if spec == "world" or spec.startswith("world["):
        return True
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def split_specs(specs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """(run folders, plain model specs) of what was named at start. A run folder without a
    checkpoint, or a second plain spec that names nothing on disk (a mistyped run folder), is
    one line."""
    if not specs:
        raise RnacliError("name at least one run folder or model")
    runs: list[Path] = []
    plain: list[str] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir() and is_run_dir(path):
            runs.append(path)
        elif path.is_dir() and (path / "checkpoint").is_dir():
            raise RnacliError(f"{spec}: run folder without a finished checkpoint")
        else:
            plain.append(spec)
    unknown = [s for s in plain if not _is_model_name(s)]
    if unknown and (len(plain) > 1 or runs):
        # beside runs or another base model, a name that is nowhere on disk is a typo
        raise RnacliError(f"no such run folder: {unknown[0]}")
    if len(plain) > 1:
        raise RnacliError(
            f"more than one base model named ({', '.join(plain)}): the runs are compared "
            "with one base model; name it once, or leave it out"
        )
    return runs, plain


def base_spec_of(plain: Sequence[str], run_bases: Mapping[str, str]) -> str:
    """The base model: the plain spec named (at most one), else the runs' common base."""
    if plain:
        return plain[0]
    bases = set(run_bases.values())
    if len(bases) != 1:
        listing = "; ".join(f"{run}: {base}" for run, base in run_bases.items())
        raise RnacliError(
            f"the runs were trained from different base models ({listing}); "
            "compare runs of one base model at a time"
        )
    return bases.pop()
